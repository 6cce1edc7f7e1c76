-- The notifier's state: which tasks want webhooks, and the durable queue of POSTs to make.
-- The attempt log itself is webhook_deliveries (003).

-- One callback URL per task, taken from TaskSubmitted.callback_url.
CREATE TABLE webhook_subscriptions (
    task_id    text        PRIMARY KEY,
    url        text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Deliveries not yet delivered or given up. The consumer inserts (delivery_id is the Kafka
-- message id of the event, so a redelivered record adds nothing); the sender claims due rows
-- with FOR UPDATE SKIP LOCKED, and deletes a row once it is delivered or given up.
CREATE TABLE pending_webhooks (
    delivery_id        text        PRIMARY KEY,
    task_id            text        NOT NULL,
    url                text        NOT NULL,
    event_type         text        NOT NULL,
    -- The exact JSON bytes that are signed and POSTed, identical on every attempt.
    body               bytea       NOT NULL,
    -- Attempts made so far (0 until the first POST).
    attempt            integer     NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    next_attempt_at_ms bigint      NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pending_webhooks_due ON pending_webhooks (next_attempt_at_ms);
