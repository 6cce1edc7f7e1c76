-- A task accepted with 202 is visible at once (as Accepted) on every API replica, before the
-- projector has seen its TaskSubmitted. Operational rows of the API, not task state: the status
-- comes from task_status as soon as it exists; old markers are pruned.
CREATE TABLE accepted_tasks (
    task_id      text        PRIMARY KEY,
    tenant       text        NOT NULL,
    task_type    text        NOT NULL,
    submitted_by text,
    request_json text        NOT NULL,  -- sealed like the projections' payload columns
    accepted_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX accepted_tasks_age ON accepted_tasks (accepted_at);
