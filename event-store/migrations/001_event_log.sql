-- The append-only event log: one stream per task instance.
CREATE TABLE events (
    position    bigserial   PRIMARY KEY,
    stream_id   text        NOT NULL,
    version     integer     NOT NULL CHECK (version > 0),
    event_type  text        NOT NULL,
    message_id  text        NOT NULL UNIQUE,
    -- Avro single-object encoded TaskEventMessage: the same bytes that go to Kafka.
    payload     bytea       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    -- The writing transaction: projections read in (tx_id, position) order below the oldest
    -- running transaction, so a late commit of a lower position is never skipped.
    tx_id       xid8        NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT events_stream_version UNIQUE (stream_id, version)
);
CREATE INDEX events_by_transaction ON events (tx_id, position);

CREATE FUNCTION refuse_event_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % on events is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER events_refuse_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION refuse_event_change();
CREATE TRIGGER events_refuse_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_change();

-- Inbox: a message id recorded in the same transaction as its effect makes redelivery a no-op.
CREATE TABLE processed_messages (
    consumer     text        NOT NULL,
    message_id   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);

-- Transactional outbox: Kafka records written with the events, published after commit,
-- deleted once the broker acknowledged them. A crash in between re-sends; never drops.
CREATE TABLE outbox (
    id         bigserial   PRIMARY KEY,
    topic      text        NOT NULL,
    key        bytea,
    value      bytea       NOT NULL,
    headers    jsonb       NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Durable timers of the orchestrator (retries, step and task timeouts).
CREATE TABLE timers (
    task_id    text    NOT NULL,
    kind       text    NOT NULL,
    step       text    NOT NULL,
    attempt    integer NOT NULL,
    fire_at_ms bigint  NOT NULL,
    PRIMARY KEY (task_id, kind, step, attempt)
);
CREATE INDEX timers_due ON timers (fire_at_ms);

-- Live progress reported by heartbeats (ephemeral, not part of the log).
CREATE TABLE step_progress (
    task_id     text        NOT NULL,
    step        text        NOT NULL,
    attempt     integer     NOT NULL,
    progress    double precision,
    message     text,
    reported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, step)
);
