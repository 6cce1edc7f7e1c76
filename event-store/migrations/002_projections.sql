-- Projections: rebuilt from the event log at any time (tasksaga-replay).
CREATE TABLE projection_checkpoints (
    name          text        PRIMARY KEY,
    last_tx_id    xid8        NOT NULL DEFAULT '0',
    last_position bigint      NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE task_status (
    task_id         text        PRIMARY KEY,
    task_type       text        NOT NULL,
    status          text        NOT NULL,
    version         integer     NOT NULL,
    request_json    text        NOT NULL,
    response_json   text,
    callback_url    text,
    idempotency_key text,
    end_reason      text,
    submitted_at    timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

CREATE TABLE step_records (
    task_id              text        NOT NULL,
    step                 text        NOT NULL,
    status               text        NOT NULL,
    attempt              integer     NOT NULL DEFAULT 0,
    compensation_attempt integer     NOT NULL DEFAULT 0,
    data_json            text,
    error_type           text,
    error_message        text,
    completion_rank      integer,
    updated_at           timestamptz NOT NULL,
    PRIMARY KEY (task_id, step)
);

CREATE TABLE condition_snapshots (
    task_id         text        NOT NULL,
    step            text        NOT NULL,
    description     text        NOT NULL,
    function        text        NOT NULL,
    result          boolean     NOT NULL,
    context_summary text        NOT NULL,
    evaluated_at    timestamptz NOT NULL,
    PRIMARY KEY (task_id, step)
);

CREATE TABLE audit_entries (
    position    bigint      PRIMARY KEY,
    task_id     text        NOT NULL,
    version     integer     NOT NULL,
    event_type  text        NOT NULL,
    step        text,
    summary     text        NOT NULL,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX audit_entries_by_task ON audit_entries (task_id, version);
