-- Opt-in to the edge's completion cache, per key and per group.
ALTER TABLE api_keys ADD COLUMN completion_cache INTEGER NOT NULL DEFAULT 0;
ALTER TABLE user_groups ADD COLUMN completion_cache INTEGER NOT NULL DEFAULT 0;
