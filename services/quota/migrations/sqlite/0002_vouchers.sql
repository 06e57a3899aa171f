CREATE TABLE vouchers (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    -- The code is a bearer credit: only its SHA-256 is kept, and the code
    -- is shown once, at creation.
    code_sha256 TEXT NOT NULL UNIQUE,
    code_hint TEXT NOT NULL,
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    max_uses BIGINT NOT NULL CHECK (max_uses > 0),
    uses BIGINT NOT NULL,
    expire_at BIGINT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX vouchers_tenant ON vouchers (tenant_id, id);

-- One row per user and voucher: the primary key is what makes a second
-- redemption by the same user fail, however concurrent.
CREATE TABLE voucher_redemptions (
    voucher_id TEXT NOT NULL REFERENCES vouchers(id),
    user_id TEXT NOT NULL,
    ledger_entry_id TEXT NOT NULL,
    redeemed_at BIGINT NOT NULL,
    PRIMARY KEY (voucher_id, user_id)
);
