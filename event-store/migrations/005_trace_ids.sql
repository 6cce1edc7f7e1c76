-- Failures carry the trace id of the attempt that failed, so an operator can find its spans.
ALTER TABLE step_records ADD COLUMN trace_id text;
ALTER TABLE task_status ADD COLUMN failed_step text;
ALTER TABLE task_status ADD COLUMN error_trace_id text;
