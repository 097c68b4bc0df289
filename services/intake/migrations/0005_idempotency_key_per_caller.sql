-- An Idempotency-Key is its caller's own, as clients expect of it: two staff accounts (or their
-- integrations) that happen to choose the same key record two cases, and neither is answered with the
-- other's case, or told that it exists. Keys recorded before stay valid for the account that sent them.

ALTER TABLE cases DROP CONSTRAINT cases_idempotency_key_key;
CREATE UNIQUE INDEX cases_idempotency_key_per_caller ON cases (recorded_by, idempotency_key);
