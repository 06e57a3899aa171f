-- AI calls answered from the edge's completion cache.
ALTER TABLE usage_events ADD COLUMN cache_hit BOOLEAN NOT NULL DEFAULT FALSE;
