-- One row holding the catalog's version. Every write bumps it in the same
-- transaction, so the version orders all changes across replicas.
CREATE TABLE catalog_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);

INSERT INTO catalog_version (id, version) VALUES (1, 0);
