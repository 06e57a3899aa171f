-- Plans and group rate-limit rules. The resource is kept as its protobuf
-- encoding (it evolves by the wire contract's rules); the columns are what
-- lookups and uniqueness need.
CREATE TABLE limit_configs (
    kind TEXT NOT NULL CHECK (kind IN ('plan', 'rule')),
    id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    -- A plan's name; a rule's group and name.
    unique_key TEXT NOT NULL,
    group_id TEXT NOT NULL,
    spec BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id),
    UNIQUE (kind, tenant_id, unique_key)
);
CREATE INDEX limit_configs_group ON limit_configs (kind, group_id);
