-- Staff overrides of a case's risk level. The original assessment stays untouched in `assessments`;
-- each override is a row here, and the latest one is the case's level.
CREATE TABLE overrides (
    event_id        uuid PRIMARY KEY,            -- the case.risk_overridden event
    case_id         uuid        NOT NULL,
    previous_level  text,
    level           text        NOT NULL,
    reason_sealed   text        NOT NULL,        -- staff's words may quote the caller
    overridden_by   uuid        NOT NULL,
    role            text        NOT NULL,
    overridden_at   timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL
);
CREATE INDEX overrides_case ON overrides (case_id, overridden_at);

-- What case.triaged must carry again when an override re-announces a case (rows assessed before this
-- migration have none, and cannot be re-announced).
ALTER TABLE assessments
    ADD COLUMN governorate  text,
    ADD COLUMN needs        text[],
    ADD COLUMN consents     text[];
