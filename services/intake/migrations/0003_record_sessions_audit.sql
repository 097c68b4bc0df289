-- The full case record, who recorded and holds each case, staff sessions and API tokens, the failed-login
-- limit, risk overrides, referral statuses and escalations heard from referral, and the audit of every
-- read and change of a case. Personal text is stored only sealed (columns *_sealed); the phone is also
-- kept as a keyed hash so repeat callers are found without decrypting anything.

ALTER TABLE cases
    ADD COLUMN recorded_by             uuid,
    ADD COLUMN assigned_to             uuid,
    ADD COLUMN caller_relation         text,
    ADD COLUMN victim_age_band         text,
    ADD COLUMN victim_gender           text,
    ADD COLUMN district                text,
    ADD COLUMN extortion_types         text[]  NOT NULL DEFAULT '{}',
    ADD COLUMN platforms               text[]  NOT NULL DEFAULT '{}',
    ADD COLUMN perpetrator             text,
    ADD COLUMN demands                 text[]  NOT NULL DEFAULT '{}',
    ADD COLUMN demand_amount           numeric(16, 2),
    ADD COLUMN demand_currency         text,
    ADD COLUMN deadline_at             timestamptz,
    ADD COLUMN published_on            text[]  NOT NULL DEFAULT '{}',
    ADD COLUMN family_contact_allowed  boolean NOT NULL DEFAULT false,
    ADD COLUMN tribe_contact_allowed   boolean NOT NULL DEFAULT false,
    ADD COLUMN anonymous               boolean NOT NULL DEFAULT false,
    ADD COLUMN contact_name_sealed     text,
    ADD COLUMN contact_phone_sealed    text,
    ADD COLUMN contact_phone_hash      text,
    ADD COLUMN contact_safe_times_sealed text,
    ADD COLUMN contact_code_word_sealed  text,
    ADD COLUMN no_messages             boolean NOT NULL DEFAULT true;
CREATE INDEX cases_recorded_by ON cases (recorded_by);
CREATE INDEX cases_assigned_to ON cases (assigned_to);
CREATE INDEX cases_phone_hash ON cases (contact_phone_hash) WHERE contact_phone_hash IS NOT NULL;
CREATE INDEX cases_received_at ON cases (received_at);

-- A counsellor works for one partner organisation and sees the cases referred to it.
-- The draft key encrypts the operator's unsent form in the browser (see static/app.js).
ALTER TABLE users
    ADD COLUMN partner_id        uuid,
    ADD COLUMN draft_key_sealed  text;

CREATE TABLE sessions (
    token_hash    text PRIMARY KEY,          -- sha256 of the cookie: a copy of this table opens no session
    user_id       uuid        NOT NULL REFERENCES users (id),
    csrf_token    text        NOT NULL,
    created_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,      -- the end of the shift, however active
    ip            text
);
CREATE INDEX sessions_user ON sessions (user_id);

-- For machine clients (a web form, a partner's system, the tests): a bearer token acting as its user.
CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY,
    token_hash    text        NOT NULL UNIQUE,
    user_id       uuid        NOT NULL REFERENCES users (id),
    label         text        NOT NULL,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz,
    revoked_at    timestamptz
);

-- Failed logins, by a keyed hash of the name typed (people type passwords into the name box) and by address.
CREATE TABLE login_failures (
    id             bigserial PRIMARY KEY,
    username_hash  text        NOT NULL,
    ip             text,
    failed_at      timestamptz NOT NULL
);
CREATE INDEX login_failures_user ON login_failures (username_hash, failed_at);
CREATE INDEX login_failures_ip ON login_failures (ip, failed_at);

CREATE TABLE case_overrides (
    id              uuid PRIMARY KEY,
    case_id         uuid        NOT NULL REFERENCES cases (id),
    previous_level  text,
    level           text        NOT NULL,
    reason_sealed   text        NOT NULL,
    overridden_by   uuid        NOT NULL,
    role            text        NOT NULL,
    overridden_at   timestamptz NOT NULL
);
CREATE INDEX case_overrides_case ON case_overrides (case_id, overridden_at);

-- Referral statuses may arrive before intake has heard of the referral, so they live apart and the
-- latest change wins whatever order events arrive in.
CREATE TABLE case_referral_statuses (
    referral_id      uuid PRIMARY KEY,
    case_id          uuid        NOT NULL,
    status           text        NOT NULL,
    previous_status  text        NOT NULL,
    note_code        text,
    changed_by       text        NOT NULL,
    changed_at       timestamptz NOT NULL
);
CREATE INDEX case_referral_statuses_case ON case_referral_statuses (case_id);

CREATE TABLE case_escalations (
    id            bigserial PRIMARY KEY,
    case_id       uuid        NOT NULL,
    referral_id   uuid,
    service       text        NOT NULL,
    reason        text        NOT NULL,
    step          integer     NOT NULL,
    reoffered_to  uuid,
    escalated_at  timestamptz NOT NULL
);
CREATE INDEX case_escalations_case ON case_escalations (case_id);

-- Who read or changed what, when, from where. Written in the same transaction as the change it records.
-- `detail` holds codes and levels, never personal text.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    actor_id    uuid,
    actor_role  text,
    via         text        NOT NULL,        -- session, token or cli
    action      text        NOT NULL,
    case_id     uuid,
    detail      jsonb       NOT NULL DEFAULT '{}',
    ip          text
);
CREATE INDEX audit_log_case ON audit_log (case_id, at);
CREATE INDEX audit_log_actor ON audit_log (actor_id, at);
