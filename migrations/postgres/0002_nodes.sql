-- The gateways on this store, each with its heartbeat: a node silent for longer than
-- [gateway] node_timeout_secs is lost, and a surviving node closes its stay-line sessions.
CREATE TABLE nodes (
    node_id      TEXT    NOT NULL PRIMARY KEY,
    instance     TEXT    NOT NULL,   -- new at every start: a restart is not a second node
    started_at   BIGINT  NOT NULL,
    last_seen_at BIGINT  NOT NULL
);
