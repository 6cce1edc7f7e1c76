-- Each orchestrator fires only the timers of task types it knows (a deployment may run
-- orchestrators with different task modules against one database).
ALTER TABLE timers ADD COLUMN task_type text NOT NULL DEFAULT '';
CREATE INDEX timers_due_by_type ON timers (task_type, fire_at_ms);
