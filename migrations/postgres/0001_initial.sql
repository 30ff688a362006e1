-- agents, sessions and audit on PostgreSQL, for several gateway nodes sharing one store: the
-- same tables as migrations/sqlite (after all its steps), with the same column types as the
-- gateway reads them (times are Unix milliseconds; flags are 0 or 1).
CREATE TABLE agents (
    tenant               TEXT    NOT NULL DEFAULT 'default',
    number               TEXT    NOT NULL,
    name                 TEXT    NOT NULL DEFAULT '',
    passcode_hash        TEXT    NOT NULL,          -- argon2id PHC string, never the passcode
    must_change          BIGINT  NOT NULL DEFAULT 0,
    allowed_stations     TEXT    NOT NULL DEFAULT '',
    allowed_networks     TEXT    NOT NULL DEFAULT '',
    default_extension    TEXT    NOT NULL DEFAULT '',
    language             TEXT    NOT NULL DEFAULT '',
    failed_attempts      BIGINT  NOT NULL DEFAULT 0,
    failure_window_start BIGINT,
    locked_until         BIGINT,
    enabled              BIGINT  NOT NULL DEFAULT 1,
    created_at           BIGINT  NOT NULL,
    PRIMARY KEY (tenant, number)
);

-- One row per logged-on agent, and one agent per station: the database enforces both, for
-- every node at once.
CREATE TABLE sessions (
    tenant        TEXT    NOT NULL,
    agent         TEXT    NOT NULL,
    station       TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    node_id       TEXT    NOT NULL,
    call_id       TEXT,
    status        TEXT    NOT NULL DEFAULT 'on_break',
    stay          BIGINT  NOT NULL DEFAULT 0,
    logged_in_at  BIGINT  NOT NULL,
    last_seen_at  BIGINT  NOT NULL,
    PRIMARY KEY (tenant, agent),
    FOREIGN KEY (tenant, agent) REFERENCES agents (tenant, number) ON DELETE CASCADE
);
CREATE UNIQUE INDEX sessions_one_agent_per_station ON sessions (tenant, station);
CREATE INDEX sessions_by_node ON sessions (node_id);

-- Append-only record of every attempt, login, logout and administrative change.
CREATE TABLE audit (
    id       BIGSERIAL PRIMARY KEY,
    at       BIGINT  NOT NULL,
    tenant   TEXT    NOT NULL,
    agent    TEXT,
    station  TEXT,
    source   TEXT,
    call_id  TEXT,
    event    TEXT    NOT NULL,
    reason   TEXT
);
CREATE INDEX audit_by_agent ON audit (tenant, agent, id);
