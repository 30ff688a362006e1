-- Login attempts per calling station and per source address in the current minute, counted
-- in the store when several nodes share it (PostgreSQL), so that calls spread over the nodes
-- count together. One node counts them in memory.
CREATE TABLE attempts (
    key          TEXT    NOT NULL PRIMARY KEY,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL
);
