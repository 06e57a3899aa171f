-- AI calls: the channel's provider, whether the tokens were estimated, the
-- time to the first token of a stream, and the finish reason.
ALTER TABLE usage_events ADD COLUMN provider TEXT NOT NULL DEFAULT '';
ALTER TABLE usage_events ADD COLUMN estimated BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE usage_events ADD COLUMN ttft_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_events ADD COLUMN finish_reason TEXT NOT NULL DEFAULT '';
