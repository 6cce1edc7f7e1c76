-- Operator repair (docs/operations.md, "Operator repair").
--
-- dead_letters: every record of a dead-letter topic, indexed by the orchestrator's dead-letter
-- indexer (one row per topic, partition and offset), so operators page and filter them and a
-- replay is recorded: replayed_at is set before the record is produced again, so two replays
-- of one letter need an explicit "again".
CREATE TABLE dead_letters (
    id               bigserial   PRIMARY KEY,
    dlq_topic        text        NOT NULL,
    dlq_partition    integer     NOT NULL,
    dlq_offset       bigint      NOT NULL,
    source_topic     text        NOT NULL,
    source_partition integer     NOT NULL,  -- -1: refused by the broker (outbox_dead_letters)
    source_offset    bigint      NOT NULL,
    consumer_group   text        NOT NULL,
    reason           text        NOT NULL,
    record_key       bytea,
    record_value     bytea,
    headers          jsonb       NOT NULL DEFAULT '{}',
    task_id          text,       -- from the record, when it names one
    tenant           text,       -- from a SubmitTask; else the task's (task_status) at query
    failed_at        timestamptz NOT NULL,
    indexed_at       timestamptz NOT NULL DEFAULT now(),
    replayed_at      timestamptz,
    replayed_by      text,
    replay_count     integer     NOT NULL DEFAULT 0,
    UNIQUE (dlq_topic, dlq_partition, dlq_offset)
);
CREATE INDEX dead_letters_task ON dead_letters (task_id);

-- orphan_sweeps: a report of the objects no live task references, then (after the grace
-- period) the sweep that deleted those still unreferenced; each object's outcome is kept.
CREATE TABLE orphan_sweeps (
    sweep_id        text        PRIMARY KEY,
    tenant          text        NOT NULL,
    buckets         text[]      NOT NULL,
    retention_hours double precision NOT NULL,
    reported_at     timestamptz NOT NULL DEFAULT now(),
    reported_by     text        NOT NULL,
    sweep_started_at timestamptz,  -- one sweep at a time; a crashed one is taken over later
    swept_at        timestamptz,
    swept_by        text
);
CREATE TABLE orphan_objects (
    sweep_id      text        NOT NULL REFERENCES orphan_sweeps ON DELETE CASCADE,
    bucket        text        NOT NULL,
    object_key    text        NOT NULL,
    size          bigint      NOT NULL,
    task_id       text,
    reason        text        NOT NULL,
    outcome       text,       -- after the sweep: "deleted", or "kept: <why>"
    PRIMARY KEY (sweep_id, bucket, object_key)
);
