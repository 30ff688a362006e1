-- Whether a session is held by a line kept up (after_login = "stay"): such sessions of a
-- gateway that restarts are closed, since their lines died with it.
ALTER TABLE sessions ADD COLUMN stay INTEGER NOT NULL DEFAULT 0;
