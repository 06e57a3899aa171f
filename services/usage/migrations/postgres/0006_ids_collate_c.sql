-- Ids compare byte by byte: under a linguistic collation (the database's
-- default, e.g. en_US.UTF-8 or C.UTF-8) every B-tree comparison on them
-- went through strcoll, a tenth of the server's time on ingest. The keyset
-- pages on (occurred_at, event_id) stay consistent: the index and the
-- comparisons both use the column's collation. Rebuilds the indexes on
-- these columns, under a lock: run it in a quiet window on a big table.
ALTER TABLE usage_events
    ALTER COLUMN event_id TYPE TEXT COLLATE "C",
    ALTER COLUMN tenant_id TYPE TEXT COLLATE "C",
    ALTER COLUMN user_id TYPE TEXT COLLATE "C",
    ALTER COLUMN key_id TYPE TEXT COLLATE "C";
ALTER TABLE audit_index
    ALTER COLUMN event_id TYPE TEXT COLLATE "C",
    ALTER COLUMN tenant_id TYPE TEXT COLLATE "C";
