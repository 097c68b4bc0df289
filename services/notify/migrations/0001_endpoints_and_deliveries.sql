-- Where each partner receives webhooks, and every delivery and attempt made to it.
CREATE TABLE endpoints (
    partner_id     uuid PRIMARY KEY,
    url            text        NOT NULL,
    secret_sealed  text        NOT NULL,  -- the whsec_ secret, sealed with the data key ring
    enabled        boolean     NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE deliveries (
    id               uuid PRIMARY KEY,
    webhook_id       text        NOT NULL UNIQUE,  -- the same across retries, so partners can dedupe
    referral_id      uuid        NOT NULL UNIQUE,
    case_id          uuid        NOT NULL,
    partner_id       uuid        NOT NULL,
    lane             text        NOT NULL,
    payload          jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'pending',  -- pending, delivered, failed
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    lease_until      timestamptz,
    created_at       timestamptz NOT NULL,
    finished_at      timestamptz
);
CREATE INDEX deliveries_due ON deliveries (lane, next_attempt_at) WHERE status = 'pending';

CREATE TABLE delivery_attempts (
    delivery_id       uuid        NOT NULL REFERENCES deliveries (id),
    attempt           integer     NOT NULL,
    attempted_at      timestamptz NOT NULL,
    outcome           text        NOT NULL,  -- delivered, retrying, failed
    status_code       integer,
    error             text,                  -- timeout, connection_error, ... never the partner's words
    latency_ms        double precision NOT NULL,
    response_excerpt  text,                  -- the first bytes of the partner's answer
    PRIMARY KEY (delivery_id, attempt)
);
