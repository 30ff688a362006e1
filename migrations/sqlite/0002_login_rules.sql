-- Login rules: lockout window, per-agent networks, and one agent per station enforced by the
-- database like one session per agent.
ALTER TABLE agents ADD COLUMN failure_window_start INTEGER;
ALTER TABLE agents ADD COLUMN allowed_networks TEXT NOT NULL DEFAULT '';
DROP INDEX sessions_by_station;
CREATE UNIQUE INDEX sessions_one_agent_per_station ON sessions (tenant, station);
