ALTER TABLE users ADD COLUMN login_method TEXT NOT NULL DEFAULT 'PASSWORD';
ALTER TABLE users ADD COLUMN last_login_at BIGINT;

CREATE TABLE user_groups (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    priority INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES user_groups(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    -- SHA-256 of the key, hex: the plaintext is never stored.
    key_sha256 TEXT NOT NULL UNIQUE,
    group_id TEXT REFERENCES user_groups(id),
    spend_limit_micros BIGINT,
    plan_id TEXT NOT NULL,
    expire_at BIGINT,
    frozen INTEGER NOT NULL,
    -- JSON arrays of strings.
    allowed_models TEXT NOT NULL,
    allowed_ips TEXT NOT NULL,
    last_used_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX api_keys_user ON api_keys (user_id, id);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);

CREATE TABLE clients (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    client_id TEXT NOT NULL,
    plan_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, client_id)
);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    algorithm TEXT NOT NULL,
    private_key BLOB NOT NULL,
    public_key BLOB NOT NULL,
    active INTEGER NOT NULL,
    created_at BIGINT NOT NULL
);

-- One row: the version of the last change that can affect a principal.
-- Bumped in the writing transaction, so versions are gap-free and ordered
-- across replicas.
CREATE TABLE identity_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO identity_version (id, version) VALUES (1, 0);

CREATE TABLE key_changes (
    version BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_sha256 TEXT NOT NULL,
    group_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
