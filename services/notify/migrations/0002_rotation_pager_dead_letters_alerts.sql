-- Several secrets per endpoint during rotation; the supervisors' pager endpoints; dead deliveries and
-- the alerts that tell supervisors what the webhook path could not.

-- A secret signs while it has not expired. Rotation adds a secret and gives the ones before it an
-- expiry at the end of the overlap, so for a while each webhook carries one signature per secret.
CREATE TABLE endpoint_secrets (
    id             bigserial   PRIMARY KEY,
    endpoint_id    uuid        NOT NULL,  -- a partner's id (endpoints) or an on-call endpoint's id
    secret_sealed  text        NOT NULL,  -- the whsec_ secret, sealed with the data key ring
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz
);
CREATE INDEX endpoint_secrets_by_endpoint ON endpoint_secrets (endpoint_id);
INSERT INTO endpoint_secrets (endpoint_id, secret_sealed, created_at)
    SELECT partner_id, secret_sealed, created_at FROM endpoints;
ALTER TABLE endpoints DROP COLUMN secret_sealed;

ALTER TABLE endpoints
    ADD COLUMN consecutive_exhausted integer NOT NULL DEFAULT 0,
    ADD COLUMN disabled_at            timestamptz,
    ADD COLUMN disabled_reason        text;

-- Where the on-duty supervisors are paged (escalations). Never disabled automatically: it is the last
-- path to a person; its failures raise alerts instead.
CREATE TABLE oncall_endpoints (
    id          uuid        PRIMARY KEY,
    name        text,
    url         text        NOT NULL,
    enabled     boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A delivery is a referral offered to a partner or an escalation paged to an on-call endpoint.
ALTER TABLE deliveries
    ADD COLUMN kind         text    NOT NULL DEFAULT 'referral.offered',  -- the webhook's type
    ADD COLUMN target       text    NOT NULL DEFAULT 'partner',           -- partner or oncall
    ADD COLUMN endpoint_id  uuid,
    ADD COLUMN round_start  integer NOT NULL DEFAULT 0,  -- attempts made before the last replay
    ALTER COLUMN referral_id DROP NOT NULL,
    ALTER COLUMN partner_id DROP NOT NULL,
    DROP CONSTRAINT deliveries_referral_id_key;  -- a referral is offered once, and may be paged too
UPDATE deliveries SET endpoint_id = partner_id;
ALTER TABLE deliveries ALTER COLUMN endpoint_id SET NOT NULL;
CREATE INDEX deliveries_failed ON deliveries (finished_at) WHERE status = 'failed';

-- Deliveries whose last attempt failed: what failed, and whether someone replayed it since.
CREATE TABLE dead_deliveries (
    id           bigserial   PRIMARY KEY,
    delivery_id  uuid        NOT NULL REFERENCES deliveries (id),
    attempts     integer     NOT NULL,
    last_error   text        NOT NULL,  -- "status 503", "timeout", ...: a code, never the partner's words
    dead_at      timestamptz NOT NULL,
    replayed_at  timestamptz
);
CREATE INDEX dead_deliveries_open ON dead_deliveries (delivery_id) WHERE replayed_at IS NULL;

-- What supervisors must hear about outside the webhook path: `sanad alerts` lists the open ones and
-- the sanad_notify_open_alerts metric counts them. Details are codes and ids, never personal data.
CREATE TABLE alerts (
    id               bigserial   PRIMARY KEY,
    kind             text        NOT NULL,  -- endpoint_disabled, pager_exhausted, no_pager_endpoint
    endpoint_id      uuid,
    delivery_id      uuid,
    case_reference   text,
    detail           text        NOT NULL,
    raised_at        timestamptz NOT NULL,
    acknowledged_at  timestamptz,
    acknowledged_by  text
);
CREATE INDEX alerts_open ON alerts (raised_at) WHERE acknowledged_at IS NULL;
