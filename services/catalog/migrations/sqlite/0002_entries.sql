-- Every catalog resource (APIs, channels, prices, multipliers, group
-- prices) is one row: indexed columns for lookups and uniqueness, and the
-- resource itself as its protobuf encoding, which evolves by the same
-- rules as the wire contract. Secrets are sealed (AES-256-GCM) apart.
CREATE TABLE entries (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    -- '' for global resources (global model prices).
    tenant_id TEXT NOT NULL,
    -- What must be unique per kind and tenant: an API's slug, a channel's
    -- name, a price's model, a multiplier's group, group/model for a group price.
    unique_key TEXT NOT NULL,
    spec BLOB NOT NULL,
    secret BLOB,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id),
    UNIQUE (kind, tenant_id, unique_key)
);
CREATE INDEX entries_tenant ON entries (kind, tenant_id, id);

-- One row per committed write, in version order: what WatchSnapshot replays.
CREATE TABLE catalog_changes (
    version BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    created_at BIGINT NOT NULL
);
