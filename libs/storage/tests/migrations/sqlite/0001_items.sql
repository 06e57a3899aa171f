CREATE TABLE items (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    amount_micros BIGINT NOT NULL CHECK (amount_micros >= 0),
    enabled INTEGER NOT NULL,
    payload BLOB,
    created_at BIGINT NOT NULL
);
