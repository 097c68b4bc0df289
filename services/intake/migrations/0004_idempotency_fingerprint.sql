-- What a case was first sent with under its Idempotency-Key: a keyed hash (under the key file's lookup
-- key) of its body, so that a retry is told from another case sent under the same key. A case recorded
-- before this column has none, and a retry of it is answered as before.

ALTER TABLE cases ADD COLUMN idempotency_fingerprint text;
