-- One row per case: the assessment triage made, with the lexicon version that made it.
CREATE TABLE assessments (
    case_id          uuid PRIMARY KEY,
    reference        text        NOT NULL,
    event_id         uuid        NOT NULL,
    level            text        NOT NULL,
    score            integer     NOT NULL,
    reasons          jsonb       NOT NULL,  -- codes and sources only
    evidence_sealed  text,                  -- the words that triggered them quote the narrative
    lexicon_version  text        NOT NULL,
    received_at      timestamptz NOT NULL,
    assessed_at      timestamptz NOT NULL
);
