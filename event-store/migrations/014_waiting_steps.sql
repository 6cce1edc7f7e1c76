-- wait_for and sleep steps (docs/dsl.md, "Signals and sleeps"): while a step waits, the time
-- it waits until (a sleep's wake-up, a wait_for's timeout), shown in the task's status.
ALTER TABLE step_records ADD COLUMN IF NOT EXISTS waiting_until timestamptz;
