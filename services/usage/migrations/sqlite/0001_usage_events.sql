-- One row per request the edge served. The event id (UUIDv7, time-ordered)
-- is the primary key, so a replayed event is stored once.
CREATE TABLE usage_events (
    event_id TEXT PRIMARY KEY,
    occurred_at BIGINT NOT NULL,
    ingested_at BIGINT NOT NULL,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    api_id TEXT NOT NULL,
    model TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL,
    latency_micros BIGINT NOT NULL,
    upstream_latency_micros BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    cost_micros BIGINT NOT NULL,
    request_id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    is_stream INTEGER NOT NULL,
    error_message TEXT NOT NULL,
    remote_ip TEXT NOT NULL,
    user_agent TEXT NOT NULL
);

CREATE INDEX usage_events_tenant_time ON usage_events (tenant_id, occurred_at);
CREATE INDEX usage_events_key_time ON usage_events (key_id, occurred_at);
CREATE INDEX usage_events_user_time ON usage_events (user_id, occurred_at);
