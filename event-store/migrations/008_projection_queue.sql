-- Projections fed per stream, no longer by the cluster-wide transaction horizon.
--
-- Every append also records, in its own transaction (a statement trigger, so any writer of
-- the log is covered), that its stream has events up to a version. The projector takes
-- committed entries, projects each stream from the version its task_status row holds up to
-- the stream's end, and deletes the entries it settled. A transaction that is still running
-- has entries nobody can see yet, and holds back nothing else: a long transaction elsewhere
-- in the cluster (a report, a backup) no longer freezes every status, as reading below
-- pg_snapshot_xmin did.
CREATE TABLE projection_queue (
    id          bigserial   PRIMARY KEY,
    stream_id   text        NOT NULL,
    version     integer     NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE FUNCTION enqueue_projection() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO projection_queue (stream_id, version)
        SELECT stream_id, max(version) FROM appended GROUP BY stream_id;
    RETURN NULL;
END $$;

CREATE TRIGGER events_enqueue_projection AFTER INSERT ON events
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION enqueue_projection();

-- Streams written before this migration and not projected yet.
INSERT INTO projection_queue (stream_id, version)
    SELECT e.stream_id, max(e.version) FROM events e
    LEFT JOIN task_status s ON s.task_id = e.stream_id
    GROUP BY e.stream_id HAVING max(e.version) > coalesce(max(s.version), 0);

-- Retention: the inbox and the delivery log are pruned by age (see docs/architecture.md).
CREATE INDEX processed_messages_by_age ON processed_messages (processed_at);
CREATE INDEX webhook_deliveries_by_age ON webhook_deliveries (attempted_at);

-- Outbox records the broker refused for good (too large, invalid): kept whole for an
-- operator, while a dead letter naming them goes to the dead-letter topic.
CREATE TABLE outbox_dead_letters (
    id          bigint      PRIMARY KEY,
    topic       text        NOT NULL,
    key         bytea,
    value       bytea       NOT NULL,
    headers     jsonb       NOT NULL,
    reason      text        NOT NULL,
    created_at  timestamptz NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT now()
);

-- The horizon checkpoint of the former projector; projection_queue replaces it.
DROP TABLE projection_checkpoints;
