-- Signing keys are now sealed with the master key ([secrets]); keys stored
-- before that are dropped and a new one is generated at start, so tokens
-- issued before this migration must be renewed by logging in again.
DELETE FROM signing_keys;
