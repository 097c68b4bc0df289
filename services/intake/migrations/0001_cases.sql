CREATE TABLE cases (
    id                  uuid PRIMARY KEY,
    reference           text        NOT NULL UNIQUE,
    idempotency_key     text        UNIQUE,
    received_at         timestamptz NOT NULL,
    channel             text        NOT NULL,
    governorate         text        NOT NULL,
    needs               text[]      NOT NULL,
    consents            text[]      NOT NULL,
    victim_age          integer,
    material_published  boolean,
    deadline_hours      double precision,
    suicidal_thoughts   boolean,
    threat_of_violence  boolean,
    narrative_sealed    text        NOT NULL,
    -- What triage and referral reported back, kept for the operators' view.
    risk_level          text,
    risk_score          integer,
    risk_reasons        jsonb,
    risk_evidence_sealed text,
    lexicon_version     text,
    triaged_at          timestamptz,
    unmatched_services  text[]
);

CREATE TABLE case_referrals (
    id            uuid PRIMARY KEY,
    case_id       uuid        NOT NULL REFERENCES cases (id),
    partner_id    uuid        NOT NULL,
    partner_name  text        NOT NULL,
    service       text        NOT NULL,
    level         text        NOT NULL,
    created_at    timestamptz NOT NULL
);
CREATE INDEX case_referrals_case ON case_referrals (case_id);

CREATE TABLE case_deliveries (
    delivery_id     uuid        NOT NULL,
    attempt         integer     NOT NULL,
    referral_id     uuid        NOT NULL,
    case_id         uuid        NOT NULL,
    webhook_id      text        NOT NULL,
    outcome         text        NOT NULL,
    status_code     integer,
    latency_ms      double precision NOT NULL,
    attempted_at    timestamptz NOT NULL,
    next_attempt_at timestamptz,
    PRIMARY KEY (delivery_id, attempt)
);
CREATE INDEX case_deliveries_case ON case_deliveries (case_id);
