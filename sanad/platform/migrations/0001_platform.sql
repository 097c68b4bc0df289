-- Tables every service keeps in its own schema: the outbox it publishes from, the events it has
-- already handled, and the messages it had to set aside.

CREATE TABLE outbox (
    id           uuid PRIMARY KEY,
    routing_key  text        NOT NULL,
    body         jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz
);
CREATE INDEX outbox_unsent ON outbox (created_at) WHERE sent_at IS NULL;

CREATE TABLE processed_events (
    event_id     uuid PRIMARY KEY,
    event_type   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- Attempts of an event whose handler kept failing for reasons other than a bad contract.
CREATE TABLE handler_failures (
    event_id     uuid PRIMARY KEY,
    attempts     integer     NOT NULL,
    last_error   text        NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    queue        text        NOT NULL,
    event_id     uuid,
    event_type   text,
    reason       text        NOT NULL,
    body         jsonb,
    received_at  timestamptz NOT NULL DEFAULT now()
);
