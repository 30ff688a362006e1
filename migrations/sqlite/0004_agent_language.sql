-- An agent's prompt language (a directory under [prompts] dir); empty: the tenant's.
ALTER TABLE agents ADD COLUMN language TEXT NOT NULL DEFAULT '';
