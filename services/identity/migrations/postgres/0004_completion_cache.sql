-- Opt-in to the edge's completion cache, per key and per group.
ALTER TABLE api_keys ADD COLUMN completion_cache BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE user_groups ADD COLUMN completion_cache BOOLEAN NOT NULL DEFAULT FALSE;
