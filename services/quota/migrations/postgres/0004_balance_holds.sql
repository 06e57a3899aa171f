-- What open reservations hold of a balance: Check inserts, Commit deletes,
-- and a hold past expire_at no longer counts (the reservation lapsed).
-- available = balance - the live holds.
CREATE TABLE balance_holds (
    reservation_id TEXT PRIMARY KEY,
    owner_kind TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    amount_micros BIGINT NOT NULL CHECK (amount_micros >= 0),
    expire_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX balance_holds_owner ON balance_holds (owner_kind, owner_id, expire_at);
CREATE INDEX balance_holds_expiry ON balance_holds (expire_at);
