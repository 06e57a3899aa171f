-- Where each captured request / response pair lives: one Brotli-compressed
-- record in a day's segment file, read back with one seek.
CREATE TABLE audit_index (
    event_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    -- Relative to the audit directory: YYYY_MM_DD/<segment file>.
    segment TEXT NOT NULL,
    record_offset BIGINT NOT NULL,
    record_length BIGINT NOT NULL
);
CREATE INDEX audit_index_time ON audit_index (occurred_at);

-- Listing all tenants newest first (superadmin), and the retention sweep.
CREATE INDEX usage_events_time ON usage_events (occurred_at, event_id);
