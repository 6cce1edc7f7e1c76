"""One readable line per event, for the audit trail."""

from __future__ import annotations

from tasksaga.core import events as ev


def step_of(event: ev.TaskEvent) -> str | None:
    step = getattr(event, "step", None)
    return step if isinstance(step, str) and step else None


def describe(event: ev.TaskEvent) -> str:
    match event:
        case ev.TaskSubmitted():
            return f"task {event.task_type} submitted"
        case ev.StepDispatched():
            return f"step {event.step} dispatched to queue {event.queue} (attempt {event.attempt})"
        case ev.StepCompleted():
            return f"step {event.step} completed (attempt {event.attempt})"
        case ev.StepFailed():
            then = "will retry" if event.will_retry else "no retry"
            return (f"step {event.step} failed (attempt {event.attempt}): "
                    f"{event.error_type}: {event.error_message}; {then}")
        case ev.StepRetryScheduled():
            return f"step {event.step} retry scheduled (attempt {event.next_attempt})"
        case ev.ConditionEvaluated():
            summary = f" [{event.context_summary}]" if event.context_summary else ""
            return (f"condition {event.description!r} of step {event.step} "
                    f"({event.function}) = {event.result}{summary}")
        case ev.StepSkipped():
            return f"step {event.step} skipped: {event.reason}"
        case ev.StepCancellationRequested():
            return (f"step {event.step} told to stop (attempt {event.attempt}): "
                    f"{event.reason}")
        case ev.CompensationRetryRequested():
            return "compensation retry requested by an operator"
        case ev.CancellationRequested():
            return f"cancellation requested: {event.reason}"
        case ev.CompensationStarted():
            return f"compensation started: {event.reason}"
        case ev.StepCompensationDispatched():
            return f"compensation of step {event.step} dispatched (attempt {event.attempt})"
        case ev.StepCompensated():
            return f"step {event.step} compensated"
        case ev.StepCompensationFailed():
            then = "will retry" if event.will_retry else "no retry"
            return (f"compensation of step {event.step} failed (attempt {event.attempt}): "
                    f"{event.error_type}: {event.error_message}; {then}")
        case ev.StepCompensationRetryScheduled():
            return (f"compensation of step {event.step} retry scheduled "
                    f"(attempt {event.next_attempt})")
        case ev.StepSurplusSucceeded():
            then = "compensating it" if event.will_compensate else "no compensation declared"
            return (f"step {event.step}: attempt {event.attempt} also succeeded after the step's "
                    f"effect was recorded; {then}")
        case ev.StepSurplusCompensated():
            return f"step {event.step}: surplus effect of attempt {event.attempt} compensated"
        case ev.StepSurplusCompensationFailed():
            then = "will retry" if event.will_retry else "no retry: needs an operator"
            return (f"step {event.step}: compensation of the surplus effect of attempt "
                    f"{event.attempt} failed (attempt {event.compensation_attempt}): "
                    f"{event.error_type}: {event.error_message}; {then}")
        case ev.TaskCompleted():
            return "task completed"
        case ev.TaskFailed():
            return f"task failed, compensated: {event.reason}"
        case ev.TaskCancelled():
            return f"task cancelled, compensated: {event.reason}"
        case ev.TaskCompensationFailed():
            trace = f" (trace {event.trace_id})" if event.trace_id else ""
            return (f"task needs an operator: compensation of step {event.step} failed: "
                    f"{event.error_type}: {event.error_message}{trace}")
    return type(event).__name__
