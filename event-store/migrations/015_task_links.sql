-- Child tasks and depends_on (docs/dsl.md, "Child tasks and depends_on"): a task started by
-- another shows its parent (and the parent's step; none for depends_on), and a child step
-- shows the task it started; the status document joins them to the linked task's status.
ALTER TABLE task_status ADD COLUMN IF NOT EXISTS parent_task_id text;
ALTER TABLE task_status ADD COLUMN IF NOT EXISTS parent_step text;
ALTER TABLE step_records ADD COLUMN IF NOT EXISTS child_task_id text;
CREATE INDEX IF NOT EXISTS step_records_child_task ON step_records (child_task_id)
    WHERE child_task_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS task_status_parent ON task_status (parent_task_id)
    WHERE parent_task_id IS NOT NULL;
