-- agents, sessions and audit, as ../shared/DESIGN.md describes. Times are Unix milliseconds.
CREATE TABLE agents (
    tenant           TEXT    NOT NULL DEFAULT 'default',
    number           TEXT    NOT NULL,
    name             TEXT    NOT NULL DEFAULT '',
    passcode_hash    TEXT    NOT NULL,              -- argon2id PHC string, never the passcode
    must_change      INTEGER NOT NULL DEFAULT 0,
    allowed_stations TEXT    NOT NULL DEFAULT '',
    failed_attempts  INTEGER NOT NULL DEFAULT 0,
    locked_until     INTEGER,
    enabled          INTEGER NOT NULL DEFAULT 1,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (tenant, number)
);

-- One row per logged-on agent. The primary key is what makes "already logged on" a
-- constraint the database enforces: of two simultaneous logins, exactly one insert wins.
CREATE TABLE sessions (
    tenant        TEXT    NOT NULL,
    agent         TEXT    NOT NULL,
    station       TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    node_id       TEXT    NOT NULL,
    call_id       TEXT,
    status        TEXT    NOT NULL DEFAULT 'on_break',
    logged_in_at  INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, agent),
    FOREIGN KEY (tenant, agent) REFERENCES agents (tenant, number) ON DELETE CASCADE
);
CREATE INDEX sessions_by_station ON sessions (tenant, station);

-- Append-only record of every attempt, login, logout and administrative change.
CREATE TABLE audit (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    tenant   TEXT    NOT NULL,
    agent    TEXT,
    station  TEXT,
    source   TEXT,
    call_id  TEXT,
    event    TEXT    NOT NULL,
    reason   TEXT
);
CREATE INDEX audit_by_agent ON audit (tenant, agent, id);
