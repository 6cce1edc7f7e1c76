-- Archives of dropped event partitions (adapters/archive.py), the tasks they hold, and the
-- histories restored from them for audit.

-- One row per archived partition: where its events went and how to check them.
CREATE TABLE event_archives (
    id             bigserial   PRIMARY KEY,
    partition_name text        NOT NULL UNIQUE,
    lower_bound    timestamptz NOT NULL,
    upper_bound    timestamptz NOT NULL,
    bucket         text        NOT NULL,
    object_key     text        NOT NULL,  -- the Avro object container file
    manifest_key   text        NOT NULL,  -- JSON: task ids, counts, SHA-256
    sha256         text        NOT NULL,
    size_bytes     bigint      NOT NULL,
    event_count    bigint      NOT NULL,
    task_count     integer     NOT NULL,
    verified_at    timestamptz NOT NULL,  -- read back and checked before the drop
    dropped_at     timestamptz NOT NULL DEFAULT now()
);

-- One row per archived task: what its status still shows once its events left the hot tables
-- (a copy of its task_status row at archive time, payload columns sealed as they were there).
CREATE TABLE archived_tasks (
    task_id      text        PRIMARY KEY,
    archive_id   bigint      NOT NULL REFERENCES event_archives (id),
    event_count  integer     NOT NULL,
    task_type    text        NOT NULL,
    status       text        NOT NULL,
    version      integer     NOT NULL,
    request_json text        NOT NULL,
    response_json text,
    end_reason   text,
    submitted_at timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    tenant       text        NOT NULL,
    submitted_by text,
    parent_task_id text,
    parent_step  text,
    restored_at  timestamptz
);
CREATE INDEX archived_tasks_by_archive ON archived_tasks (archive_id);

-- Histories brought back from an archive (tasksaga archive restore): the same rows the events
-- table held, read by the projector like the hot log. Written only by a restore from a verified
-- archive; never updated. A restore of the same task again adds nothing (primary key).
CREATE TABLE restored_events (
    position         bigint      PRIMARY KEY,
    stream_id        text        NOT NULL,
    version          integer     NOT NULL,
    event_type       text        NOT NULL,
    message_id       text        NOT NULL,
    payload          bytea       NOT NULL,
    recorded_at      timestamptz NOT NULL,
    stream_opened_at timestamptz NOT NULL,
    restored_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version)
);
CREATE TRIGGER restored_events_refuse_update BEFORE UPDATE ON restored_events
    FOR EACH ROW EXECUTE FUNCTION refuse_event_change();
