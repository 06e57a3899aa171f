-- The edge's route rule and upstream attempts of each request.
ALTER TABLE usage_events ADD COLUMN route TEXT NOT NULL DEFAULT '';
ALTER TABLE usage_events ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
