-- The notifier's delivery log: one row per POST attempt.
CREATE TABLE webhook_deliveries (
    delivery_id  text        NOT NULL,
    attempt      integer     NOT NULL,
    task_id      text        NOT NULL,
    url          text        NOT NULL,
    event_type   text        NOT NULL,
    status_code  integer,
    outcome      text        NOT NULL,
    error        text,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (delivery_id, attempt)
);
CREATE INDEX webhook_deliveries_by_task ON webhook_deliveries (task_id);
