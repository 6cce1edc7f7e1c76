"""One readable line per event, for the audit trail."""

from __future__ import annotations

from tasksaga.core import events as ev
from tasksaga.core.fan_out_audit import compensated_instances, fan_out_line, has_completed_instances
from tasksaga.core.state import StepStatus, TaskState

_COMPENSATED_OR_COMPENSABLE = (StepStatus.COMPLETED, StepStatus.COMPENSATING,
                               StepStatus.COMPENSATION_RETRY_SCHEDULED, StepStatus.COMPENSATED,
                               StepStatus.COMPENSATION_FAILED, StepStatus.COMPENSATION_SKIPPED)


def step_of(event: ev.TaskEvent) -> str | None:
    step = getattr(event, "step", None)
    return step if isinstance(step, str) and step else None


def describe(event: ev.TaskEvent, before: TaskState | None = None,
             at_ms: int | None = None) -> str:
    """The line for ``event``; ``before`` (the state it applies to) and ``at_ms`` (when it was
    written) let the line say exactly what happened: whether anything was compensated, how
    long a retry waits."""
    def nothing_done() -> bool:  # asked by three kinds of event: not computed for the rest
        return before is not None and not _compensable(before)

    match event:
        case ev.TaskSubmitted():
            by = ""
            if event.parent_task_id is not None:
                by = (f" by step {event.parent_step} of task {event.parent_task_id}"
                      if event.parent_step else
                      f" on the completion of task {event.parent_task_id} (depends_on)")
            return (f"task {event.task_type} submitted (version {event.definition_version})"
                    f"{by}")
        case ev.StepDispatched():
            if event.chained_after:
                return (f"step {event.step} started by the worker of step {event.chained_after}"
                        f" (chain, queue {event.queue}, attempt {event.attempt})")
            chain = f"; then by its worker: {', '.join(event.chain)}" if event.chain else ""
            reserved = (before is not None and before.step(event.step).chain_reserved
                        and before.step(event.step).attempt == 0 and event.attempt == 2)
            first = "; attempt 1 was its chain's, which stopped before it" if reserved else ""
            return (f"step {event.step} dispatched to queue {event.queue} (attempt "
                    f"{event.attempt}){chain}{first}")
        case ev.StepCompleted():
            return f"step {event.step} completed (attempt {event.attempt})"
        case ev.StepFailed():
            then = "will retry" if event.will_retry else "no retry"
            return (f"step {event.step} failed (attempt {event.attempt}): "
                    f"{event.error_type}: {event.error_message}; {then}")
        case ev.StepRetryScheduled():
            return (f"step {event.step} retry scheduled (attempt {event.next_attempt})"
                    f"{_wait(event.fire_at_ms, at_ms)}")
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
            if nothing_done():
                return f"nothing completed, nothing to compensate: {event.reason}"
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
                    f"(attempt {event.next_attempt}){_wait(event.fire_at_ms, at_ms)}")
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
            done = "nothing to compensate" if nothing_done() else "compensated"
            instances = compensated_instances(before) if before else ""
            return f"task failed, {done}{instances}: {event.reason}"
        case ev.TaskCancelled():
            done = "nothing to compensate" if nothing_done() else "compensated"
            instances = compensated_instances(before) if before else ""
            return f"task cancelled, {done}{instances}: {event.reason}"
        case ev.TaskCompensationFailed():
            trace = f" (trace {event.trace_id})" if event.trace_id else ""
            return (f"task needs an operator: compensation of step {event.step} failed: "
                    f"{event.error_type}: {event.error_message}{trace}")
        case ev.TaskNeedsAttention():
            where = f"step {event.step}" if event.step else "the response builder"
            trace = f", trace {event.trace_id}" if event.trace_id else ""
            return (f"needs attention: {where} failed after the pivot {event.pivot}; nothing "
                    f"was compensated ({event.error_type}: {event.error_message}{trace})")
        case ev.CancellationRefused(pivot=""):  # a workflow asked to undo itself
            return f"compensation refused: {event.reason}"
        case ev.CancellationRefused():
            return (f"cancellation refused: the pivot {event.pivot} completed, so the task "
                    f"only goes forward and nothing is compensated ({event.reason})")
        case ev.StepWaiting():
            if event.waiting_for == "time":
                return f"step {event.step} sleeping{_wait(event.until_ms or 0, at_ms)}"
            timeout = ("" if event.until_ms is None else
                       f"; times out at {_utc_time_of_day(event.until_ms)} UTC")
            return f"step {event.step} waiting for signal {event.step!r}{timeout}"
        case ev.SignalReceived():
            by = f" from {event.sent_by}" if event.sent_by else ""
            return f"{signal_line(event.step, event.signal_id)}{by}"
        case ev.ForwardRetryRequested():
            return ("forward retry requested by an operator: the failed steps run again, "
                    "each with a fresh retry budget")
        case ev.TaskVersionMissing():
            return (f"parked: version {event.definition_version} of the task's definition is "
                    f"not deployed (deployed: {event.deployed_versions}); its messages are "
                    "kept until an operator migrates or cancels it")
        case ev.MessageParked():
            return f"{event.message_type} kept until the task resumes"
        case ev.TaskMigrated():
            return (f"resumed on version {event.to_version} (from {event.from_version}, "
                    f"{event.reason})")
        case ev.MigrationRefused():
            return f"move to version {event.to_version} refused: {event.reason}"
        case ev.CompensationSkipped():
            return (f"compensation of step {event.step} skipped by {event.skipped_by}: "
                    f"{event.reason}; its effect stays, compensation goes on")
        case ev.TaskResolved():
            return (f"task resolved by {event.resolved_by} (was {event.from_status}): "
                    f"{event.reason}")
        case ev.TaskRedriven():
            resent = ", ".join(event.commands) if event.commands else "nothing in flight"
            return f"redriven by {event.redriven_by}: resent {resent} ({event.reason})"
        case ev.ChildTaskStarted():
            return (f"step {event.step} started child task {event.child_task_type} "
                    f"{event.child_task_id} (attempt {event.attempt})")
        case ev.ChildTaskEnded():
            why = f": {event.reason}" if event.reason else ""
            return (f"step {event.step}: child task {event.child_task_id} ended "
                    f"{event.status}{why}")
        case ev.FanOutExpanded() | ev.FanOutCompleted() | ev.FanOutRetried():
            return fan_out_line(event)
        case ev.WorkflowValueRecorded():
            return f"workflow recorded {event.name} = {event.data_json}"
        case ev.WorkflowDiverged():
            return (f"workflow suspended, non-determinism at await #{event.command_index} "
                    f"({event.location}): history has {event.expected}, code issued "
                    f"{event.got}")
    return type(event).__name__


def signal_line(signal: str, signal_id: str) -> str:
    """How the audit trail names a received signal (the API finds repeated ids by it)."""
    return f"signal {signal!r} received (id {signal_id})"


def _compensable(state: TaskState) -> bool:
    """Did anything complete that compensation had (or has) to undo?"""
    return (any(s.status in _COMPENSATED_OR_COMPENSABLE for s in state.steps.values())
            or has_completed_instances(state))


def _wait(fire_at_ms: int, at_ms: int | None) -> str:
    fire_at = _utc_time_of_day(fire_at_ms)
    if at_ms is None:
        return f" at {fire_at} UTC"
    return f" in {max(fire_at_ms - at_ms, 0)} ms (at {fire_at} UTC)"


def _utc_time_of_day(epoch_ms: int) -> str:
    # Arithmetic rather than datetime: the core reads no clock and imports none.
    ms_of_day = epoch_ms % 86_400_000
    hours, rest = divmod(ms_of_day, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"
