-- The partner directory, shaped after Open Referral's Human Services Data Specification (HSDS 3):
--   partners           ~ organization (+ its one location's address, which may be confidential)
--   partner_services   ~ service + service_area + language + eligibility, with this field's extensions
--                        (staff gender available, contact with the family, 24/7)
--   service_hours      ~ schedule (weekly opening hours, Iraq time)
-- Then what closes the loop: referrals re-offered partner after partner, acknowledgement deadlines as
-- rows a timer claims, the escalations made, API keys for partners and staff, and the audit trail.

ALTER TABLE partners
    ADD COLUMN description          text        NOT NULL DEFAULT '',
    ADD COLUMN address              text,                    -- never shown when confidential_address
    ADD COLUMN confidential_address boolean     NOT NULL DEFAULT false,
    ADD COLUMN phone                text,                    -- the organisation's, not a person's
    ADD COLUMN email                text,
    ADD COLUMN website              text,
    ADD COLUMN active               boolean     NOT NULL DEFAULT true,  -- false: out of the directory
    ADD COLUMN accepting_changed_at timestamptz,
    ADD COLUMN accepting_changed_by text,                    -- partner | staff key id | cli
    ADD COLUMN updated_at           timestamptz NOT NULL DEFAULT now();

CREATE TABLE partner_services (
    id               uuid PRIMARY KEY,
    partner_id       uuid        NOT NULL REFERENCES partners (id) ON DELETE CASCADE,
    service          text        NOT NULL,
    governorates     text[]      NOT NULL,                   -- or {nationwide}
    languages        text[]      NOT NULL DEFAULT '{ar}',    -- ISO 639-1 codes
    staff_genders    text[]      NOT NULL DEFAULT '{}',      -- female, male: who can see the victim
    always_open      boolean     NOT NULL DEFAULT false,
    min_age          integer CHECK (min_age >= 0),
    max_age          integer CHECK (max_age >= 0),
    eligibility      text        NOT NULL DEFAULT '',        -- HSDS eligibility_description
    contacts_family  boolean     NOT NULL DEFAULT false,     -- matched only when the victim asked for it
    UNIQUE (partner_id, service)
);

CREATE TABLE service_hours (
    service_id  uuid     NOT NULL REFERENCES partner_services (id) ON DELETE CASCADE,
    weekday     smallint NOT NULL CHECK (weekday BETWEEN 0 AND 6),  -- 0 Monday .. 6 Sunday
    opens_at    time     NOT NULL,
    closes_at   time     NOT NULL,
    CHECK (opens_at < closes_at),
    PRIMARY KEY (service_id, weekday, opens_at)
);

-- Directory rows made before this migration offered their services everywhere they worked, at all hours.
INSERT INTO partner_services (id, partner_id, service, governorates, always_open)
SELECT gen_random_uuid(), p.id, s.service, p.governorates, true
FROM partners p CROSS JOIN LATERAL unnest(p.services) AS s (service);
ALTER TABLE partners DROP COLUMN services, DROP COLUMN governorates;

-- Referral's own record of each triaged case: what re-offers and "refer anyway" need, nothing personal.
CREATE TABLE cases (
    case_id         uuid PRIMARY KEY,
    reference       text        NOT NULL,
    level           text        NOT NULL,
    governorate     text        NOT NULL,
    needs           text[]      NOT NULL,
    consents        text[]      NOT NULL,
    correlation_id  uuid        NOT NULL,
    triaged_at      timestamptz NOT NULL
);

-- A need of a case may now be offered to one partner after another: attempt 1, 2, ...
ALTER TABLE referrals
    DROP CONSTRAINT referrals_case_id_service_key,
    ADD COLUMN attempt      integer NOT NULL DEFAULT 1,
    ADD COLUMN governorate  text,                        -- null only on referrals made before this migration
    ADD COLUMN note_code    text,
    ADD COLUMN offered_by   text    NOT NULL DEFAULT 'matching',  -- matching | reoffer | refer_anyway
    ADD COLUMN acknowledged_at timestamptz,
    ADD CONSTRAINT referrals_case_service_attempt UNIQUE (case_id, service, attempt);
CREATE INDEX referrals_by_partner ON referrals (partner_id, created_at DESC);

-- Acknowledgement policy per risk level. A chain copies the row it started with (policy_version and all),
-- so a change here never alters escalations already running.
CREATE TABLE escalation_policies (
    level         text PRIMARY KEY,
    ack_seconds   integer     NOT NULL CHECK (ack_seconds > 0),
    max_reoffers  integer     NOT NULL CHECK (max_reoffers >= 0),
    version       integer     NOT NULL DEFAULT 1,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    updated_by    text        NOT NULL DEFAULT 'migration'
);
INSERT INTO escalation_policies (level, ack_seconds, max_reoffers) VALUES
    ('critical', 300, 3),      -- 5 minutes
    ('high', 1800, 3),         -- 30 minutes
    ('medium', 14400, 2),      -- 4 hours
    ('low', 259200, 1);        -- 3 days

-- The timer's work: one row per standing offer whose acknowledgement is awaited. Claimed with
-- FOR UPDATE SKIP LOCKED, so any number of workers fire each one once, and it survives restarts.
CREATE TABLE ack_deadlines (
    id              uuid PRIMARY KEY,
    referral_id     uuid        NOT NULL REFERENCES referrals (id),
    chain_id        uuid        NOT NULL,            -- the same across the re-offers of one need of a case
    lane            text        NOT NULL,
    due_at          timestamptz NOT NULL,
    status          text        NOT NULL DEFAULT 'pending',  -- pending | fired | cancelled | failed
    steps_taken     integer     NOT NULL,            -- escalations of the chain before this deadline
    policy_level    text        NOT NULL,
    policy_version  integer     NOT NULL,
    ack_seconds     integer     NOT NULL,
    max_reoffers    integer     NOT NULL,
    failures        integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    finished_at     timestamptz
);
CREATE INDEX ack_deadlines_due ON ack_deadlines (due_at) WHERE status = 'pending';
CREATE INDEX ack_deadlines_due_by_lane ON ack_deadlines (lane, due_at) WHERE status = 'pending';
CREATE UNIQUE INDEX ack_deadlines_one_pending ON ack_deadlines (referral_id) WHERE status = 'pending';
CREATE INDEX ack_deadlines_of_referral ON ack_deadlines (referral_id, created_at DESC);

-- Every escalation made, as the supervisor was paged with it.
CREATE TABLE escalations (
    id                uuid PRIMARY KEY,
    event_id          uuid        NOT NULL,
    chain_id          uuid,
    referral_id       uuid,                          -- null: nothing matched
    case_id           uuid        NOT NULL,
    service           text        NOT NULL,
    level             text        NOT NULL,
    reason            text        NOT NULL,
    step              integer     NOT NULL,
    reoffered_to      uuid,
    new_referral_id   uuid,
    escalated_at      timestamptz NOT NULL,
    fired_by          text        NOT NULL           -- the process that made it
);
CREATE INDEX escalations_by_case ON escalations (case_id, escalated_at);

-- Keys for the partner callback API and the admin API. Only a keyed hash is stored (see apikeys.py).
CREATE TABLE api_keys (
    key_id        text PRIMARY KEY,
    role          text        NOT NULL CHECK (role IN ('partner', 'counsellor', 'supervisor', 'admin')),
    partner_id    uuid REFERENCES partners (id),
    staff_name    text,
    digest        text        NOT NULL,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz,                       -- set when rotated with a grace period
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    CHECK ((role = 'partner') = (partner_id IS NOT NULL)),
    CHECK ((role = 'partner') = (staff_name IS NULL))
);
CREATE INDEX api_keys_of_partner ON api_keys (partner_id) WHERE revoked_at IS NULL;

-- Who did or read what, when, and from where; refusals included. No personal data: a supervisor's
-- free-text note is sealed with the data key ring.
CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL,
    actor_kind   text        NOT NULL,              -- partner | staff | anonymous | cli | system
    actor_id     text,                              -- partner id or staff name
    key_id       text,
    action       text        NOT NULL,              -- e.g. referral.read, referral.status, auth.refused
    outcome      text        NOT NULL,              -- ok | refused | not_found | conflict
    referral_id  uuid,
    case_id      uuid,
    partner_id   uuid,
    remote_addr  text,
    detail       jsonb       NOT NULL DEFAULT '{}',
    note_sealed  text
);
CREATE INDEX audit_log_by_referral ON audit_log (referral_id, at) WHERE referral_id IS NOT NULL;
CREATE INDEX audit_log_by_case ON audit_log (case_id, at) WHERE case_id IS NOT NULL;
