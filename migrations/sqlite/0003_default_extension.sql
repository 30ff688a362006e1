-- OneContact's optional extension: the station used when an agent presses # at the prompt.
ALTER TABLE agents ADD COLUMN default_extension TEXT NOT NULL DEFAULT '';
