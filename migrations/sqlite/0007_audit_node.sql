-- Which gateway node wrote each audit entry (an event says which node handled it).
ALTER TABLE audit ADD COLUMN node_id TEXT;
