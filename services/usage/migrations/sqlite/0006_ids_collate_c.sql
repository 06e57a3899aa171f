-- PostgreSQL's version makes the id columns compare byte by byte; SQLite's
-- default collation (BINARY) already does. Kept so both histories match.
SELECT 1;
