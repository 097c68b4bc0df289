-- The partner directory (a later migration extends it toward Open Referral's HSDS) and the referrals
-- made to its partners.
CREATE TABLE partners (
    id            uuid PRIMARY KEY,
    name          text        NOT NULL UNIQUE,
    services      text[]      NOT NULL,
    governorates  text[]      NOT NULL,  -- or {nationwide}
    accepting     boolean     NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE referrals (
    id          uuid PRIMARY KEY,
    case_id     uuid        NOT NULL,
    reference   text        NOT NULL,
    partner_id  uuid        NOT NULL REFERENCES partners (id),
    service     text        NOT NULL,
    level       text        NOT NULL,
    status      text        NOT NULL DEFAULT 'offered',
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    UNIQUE (case_id, service)
);
CREATE INDEX referrals_partner_open ON referrals (partner_id) WHERE status IN ('offered', 'accepted', 'in_progress');
