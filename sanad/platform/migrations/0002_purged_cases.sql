-- Cases whose personal data `sanad purge` has dropped from this schema, and when (issue 9). The rows
-- that remain keep what statistics need; this table makes a second purge skip them.
CREATE TABLE purged_cases (
    case_id    uuid PRIMARY KEY,
    purged_at  timestamptz NOT NULL
);
