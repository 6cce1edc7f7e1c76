-- Who holds each content-addressed artifact (tasksaga.worker.artifacts): one row per holder
-- (task:step) and SHA-256. The content is deleted when its last row goes; holding and
-- releasing one SHA-256 take the same transaction-scoped advisory lock, so a release never
-- deletes content a concurrent publish has just decided to reuse.
CREATE TABLE IF NOT EXISTS artifact_refs (
    sha256     text        NOT NULL,
    holder     text        NOT NULL,
    held_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sha256, holder)
);
