-- The event log becomes partitioned by time, so old history leaves the hot tables by detaching
-- and dropping whole partitions (after its archive is verified, docs/operations.md "Retention
-- and archival") instead of row deletes, which stay refused.
--
-- The partition key is the time the event's STREAM was opened (its first event), not the time
-- of each event: a task's whole stream lives in one partition. Postgres wants the partition key
-- in every unique constraint, so the constraints become (stream_id, version, stream_opened_at);
-- they still say what (stream_id, version) said because a stream has exactly one opening time:
-- `streams` fixes it when version 1 is appended (its primary key refuses a second opening), and
-- every later append copies it from there in the same statement.

CREATE TABLE streams (
    stream_id text        PRIMARY KEY,
    opened_at timestamptz NOT NULL
);

-- Free the old names (constraints, indexes, the sequence) for the new table.
ALTER TABLE events RENAME TO events_before_018;
ALTER TABLE events_before_018 RENAME CONSTRAINT events_stream_version TO events_before_018_sv;
ALTER TABLE events_before_018 RENAME CONSTRAINT events_message_id_key TO events_before_018_mid;
ALTER TABLE events_before_018 RENAME CONSTRAINT events_pkey TO events_before_018_pkey;
ALTER INDEX events_by_transaction RENAME TO events_before_018_tx;
ALTER SEQUENCE events_position_seq OWNED BY NONE;

CREATE TABLE events (
    position         bigint      NOT NULL DEFAULT nextval('events_position_seq'),
    stream_id        text        NOT NULL,
    version          integer     NOT NULL CHECK (version > 0),
    event_type       text        NOT NULL,
    message_id       text        NOT NULL,
    -- Avro single-object encoded TaskEventMessage: the same bytes that go to Kafka.
    payload          bytea       NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    tx_id            xid8        NOT NULL DEFAULT pg_current_xact_id(),
    -- When the stream was opened (streams.opened_at): the partition key.
    stream_opened_at timestamptz NOT NULL,
    CONSTRAINT events_pkey PRIMARY KEY (position, stream_opened_at),
    CONSTRAINT events_stream_version UNIQUE (stream_id, version, stream_opened_at),
    CONSTRAINT events_message_id_key UNIQUE (message_id, stream_opened_at)
) PARTITION BY RANGE (stream_opened_at);
ALTER SEQUENCE events_position_seq OWNED BY events.position;
CREATE INDEX events_by_transaction ON events (tx_id, position);

-- A partition of the log: its rows refuse UPDATE and DELETE through the parent's row trigger
-- (cloned to every partition); TRUNCATE is a statement trigger, which partitions do not inherit,
-- so each partition gets its own.
CREATE FUNCTION create_event_partition(partition_name text, lower_bound timestamptz,
                                       upper_bound timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                   partition_name, lower_bound, upper_bound);
    EXECUTE format('CREATE TRIGGER events_refuse_truncate BEFORE TRUNCATE ON %I'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_change()', partition_name);
END $$;

-- Whatever no partition covers (a clock far off, partitions not created ahead in time) lands
-- here rather than failing the append; it is never archived.
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE TRIGGER events_refuse_truncate BEFORE TRUNCATE ON events_default
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_change();

-- The existing log: a stream was opened when its first event was recorded; one monthly
-- partition (UTC) per month that opened a stream, and this month's and the next (so that
-- what is appended before an orchestrator's maintenance runs has its partition). Upcoming
-- partitions are created ahead by the orchestrators' maintenance (adapters/partitions.py).
INSERT INTO streams (stream_id, opened_at)
    SELECT stream_id, min(recorded_at) FROM events_before_018 GROUP BY stream_id;

DO $$
DECLARE
    month timestamp;
BEGIN
    FOR month IN SELECT DISTINCT date_trunc('month', opened_at AT TIME ZONE 'UTC')
                 FROM (SELECT opened_at FROM streams UNION ALL SELECT now()
                       UNION ALL SELECT now() + interval '1 month') opening
    LOOP
        PERFORM create_event_partition('events_p' || to_char(month, 'YYYYMMDD"t"HH24MISS'),
                                       month AT TIME ZONE 'UTC',
                                       (month + interval '1 month') AT TIME ZONE 'UTC');
    END LOOP;
END $$;

INSERT INTO events (position, stream_id, version, event_type, message_id, payload, recorded_at,
                    tx_id, stream_opened_at)
    SELECT e.position, e.stream_id, e.version, e.event_type, e.message_id, e.payload,
           e.recorded_at, e.tx_id, s.opened_at
    FROM events_before_018 e JOIN streams s USING (stream_id);

DROP TABLE events_before_018;

-- The guarantees of 001 and 008, on the partitioned table (created after the copy, so the copy
-- queues no projection work).
CREATE TRIGGER events_refuse_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION refuse_event_change();
CREATE TRIGGER events_refuse_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_change();
CREATE TRIGGER events_enqueue_projection AFTER INSERT ON events
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION enqueue_projection();
