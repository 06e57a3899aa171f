-- Balances are an append-only ledger; `balances` holds each owner's running
-- total so a debit locks one row instead of summing the ledger.
CREATE TABLE balances (
    owner_kind TEXT NOT NULL CHECK (owner_kind IN ('USER', 'KEY')),
    owner_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    balance_micros BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (owner_kind, owner_id)
);

CREATE TABLE ledger_entries (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    owner_kind TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    amount_micros BIGINT NOT NULL,
    balance_after_micros BIGINT NOT NULL,
    reason TEXT NOT NULL,
    -- What caused the entry (reservation, voucher redemption, admin
    -- request); unique per owner so a replayed request applies once.
    reference_id TEXT NOT NULL,
    actor_user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE UNIQUE INDEX ledger_entries_reference
    ON ledger_entries (owner_kind, owner_id, reference_id) WHERE reference_id <> '';
CREATE INDEX ledger_entries_owner ON ledger_entries (owner_kind, owner_id, created_at);
