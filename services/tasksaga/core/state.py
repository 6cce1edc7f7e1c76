"""The fold that builds a TaskInstance's state from its events (``evolve``, ``fold``). The
state's types are in ``tasksaga.core.task_state``, re-exported here."""

from __future__ import annotations

from tasksaga.core import events as ev
from tasksaga.core.fan_out_state import FanOutState
from tasksaga.core.records import assigned, replaced
from tasksaga.core.task_state import (
    TERMINAL_STATUSES as TERMINAL_STATUSES,
)
from tasksaga.core.task_state import (
    ReceivedSignal as ReceivedSignal,
)
from tasksaga.core.task_state import (
    StepState as StepState,
)
from tasksaga.core.task_state import (
    StepStatus as StepStatus,
)
from tasksaga.core.task_state import (
    SurplusEffect as SurplusEffect,
)
from tasksaga.core.task_state import (
    SurplusStatus as SurplusStatus,
)
from tasksaga.core.task_state import (
    TaskState as TaskState,
)
from tasksaga.core.task_state import (
    TaskStatus as TaskStatus,
)


def _with_step(state: TaskState, name: str, current: StepState | None = None,
               **changes: object) -> TaskState:
    """The draft with step ``name`` changed; ``current``: its state, when the caller has
    just read it (``state.step(name)``)."""
    located = state._instance(name) if state.fan_outs and name not in state.steps else None
    if located is not None:  # a fan-out instance: only its chunk of the table is copied
        fan_out, index = located
        before = current or state.step(name)
        after = replaced(before, **changes)
        fan_outs = {**state.fan_outs, fan_out.step: fan_out.updated(index, before, after)}
        return assigned(state, fan_outs=fan_outs)
    # the draft's own dict
    state.steps[name] = replaced(current or state.step(name), **changes)
    return state


def _with_surplus(state: TaskState, name: str, attempt: int, **changes: object) -> TaskState:
    step = state.step(name)
    current = step.surplus_of(attempt) or SurplusEffect(attempt, "{}", SurplusStatus.UNCOMPENSATED)
    updated = replaced(current, **changes)
    others = tuple(s for s in step.surplus if s.attempt != attempt)
    return _with_step(state, name, surplus=(*others, updated))


def _draft(state: TaskState) -> TaskState:
    """A private copy of ``state`` that ``_apply`` may change in place: its own ``steps``
    dict (the records in it, and every other field, are immutable and shared)."""
    return replaced(state, steps=dict(state.steps))


def evolve(state: TaskState, event: ev.TaskEvent) -> TaskState:
    """Apply one event. Pure and total: it never raises for events decide() produced; the
    result is a new state, ``state`` is left as it was."""
    return _apply(_draft(state), event)


def fold(events: list[ev.TaskEvent], state: TaskState | None = None) -> TaskState:
    """``evolve`` over ``events``, in order (``state`` is left as it was): the same result,
    but one draft changed in place for the whole stream, not a copy of the state and of its
    step table per event, so folding a long history costs O(events), not O(events x steps)."""
    current = state or TaskState()
    if not events:
        return current
    draft = _draft(current)
    for event in events:
        _apply(draft, event)
    return draft


class StreamFold:
    """``fold`` one event at a time, for a reader that looks at the state between events (the
    projector describes each event against the state before it): one draft changed in place.

    ``current`` is only valid until the next ``apply`` (read it, do not keep it); ``result()``
    ends the fold and hands the state over as an ordinary immutable value.
    """

    def __init__(self, state: TaskState) -> None:
        self._draft: TaskState | None = _draft(state)

    @property
    def current(self) -> TaskState:
        if self._draft is None:
            raise RuntimeError("this fold has ended: read its result()")
        return self._draft

    def apply(self, event: ev.TaskEvent) -> None:
        _apply(self.current, event)

    def result(self) -> TaskState:
        state = self.current
        self._draft = None
        return state


def _apply(state: TaskState, event: ev.TaskEvent) -> TaskState:
    """Apply one event to a draft (``_draft``), in place; returns the draft."""
    state.__dict__["version"] = state.version + 1  # a draft: assigned() without its check
    match event:
        case ev.TaskSubmitted():
            return assigned(
                state,
                task_id=event.task_id,
                task_type=event.task_type,
                status=TaskStatus.RUNNING,
                request_json=event.request_json,
                callback_url=event.callback_url,
                submitted_at_ms=event.submitted_at_ms,
                deadline_ms=event.deadline_ms,
                tenant=event.tenant,
                submitted_by=event.submitted_by,
                definition_version=event.definition_version,
                definition_fingerprint=event.definition_fingerprint,
                parent_task_id=event.parent_task_id,
                parent_step=event.parent_step,
            )
        case ev.StepDispatched():
            for name in event.chain:
                state = _with_step(state, name, chain_reserved=True)
            step = state.step(event.step)
            # A first dispatch past attempt 1 (a redrive; a chain's step the chain did not
            # start): the policy counts its attempts from this one.
            base = (event.attempt - 1 if step.status is StepStatus.PENDING and event.attempt > 1
                    else step.retry_base)
            return _with_step(
                state, event.step, step, status=StepStatus.RUNNING, attempt=event.attempt,
                error_type=None, error_message=None, trace_id=None, cancel_requested=False,
                fencing_token=event.fencing_token, retry_base=base,
            )
        case ev.StepCancellationRequested():
            return _with_step(state, event.step, cancel_requested=True)
        case ev.StepCompleted():
            state = _with_step(
                state, event.step, status=StepStatus.COMPLETED, attempt=event.attempt,
                data_json=event.data_json, waiting_until_ms=None,
                artifacts=tuple(sorted(event.artifacts.items())) if event.artifacts else (),
            )
            if state.fan_outs and state._instance(event.step) is not None:
                return state  # its for_each step takes its place in the completion order
            if state.signals:
                signals = tuple(replaced(s, consumed=True) if s.signal == event.step else s
                                for s in state.signals)
                assigned(state, signals=signals)
            return assigned(state, completion_order=(*state.completion_order, event.step))
        case ev.StepFailed():
            return _with_step(
                state, event.step,
                status=StepStatus.RETRY_SCHEDULED if event.will_retry else StepStatus.FAILED,
                error_type=event.error_type, error_message=event.error_message,
                trace_id=event.trace_id, waiting_until_ms=None,
            )
        case ev.StepRetryScheduled():
            return _with_step(state, event.step, status=StepStatus.RETRY_SCHEDULED)
        case ev.ConditionEvaluated():
            return state
        case ev.StepSkipped():
            return _with_step(state, event.step, status=StepStatus.SKIPPED)
        case ev.CancellationRequested():
            return assigned(state, ending="cancelled", end_reason=event.reason)
        case ev.CompensationStarted():
            return assigned(
                state,
                status=TaskStatus.COMPENSATING,
                ending=state.ending or "failed",
                end_reason=state.end_reason or event.reason,
            )
        case ev.StepCompensationDispatched():
            return _with_step(
                state, event.step, status=StepStatus.COMPENSATING,
                compensation_attempt=event.attempt,
            )
        case ev.StepCompensated():
            return _with_step(state, event.step, status=StepStatus.COMPENSATED)
        case ev.StepCompensationFailed():
            return _with_step(
                state, event.step,
                status=(
                    StepStatus.COMPENSATION_RETRY_SCHEDULED
                    if event.will_retry else StepStatus.COMPENSATION_FAILED
                ),
                error_type=event.error_type, error_message=event.error_message,
                trace_id=event.trace_id,
            )
        case ev.StepCompensationRetryScheduled():
            return _with_step(state, event.step, status=StepStatus.COMPENSATION_RETRY_SCHEDULED)
        case ev.TaskCompleted():
            return assigned(state, status=TaskStatus.COMPLETED, response_json=event.response_json)
        case ev.TaskFailed():  # a workflow's failure has no CompensationStarted before it
            return assigned(state, status=TaskStatus.FAILED,
                           end_reason=state.end_reason or event.reason)
        case ev.TaskCancelled():
            return assigned(state, status=TaskStatus.CANCELLED,
                           end_reason=state.end_reason or event.reason)
        case ev.TaskCompensationFailed():
            return assigned(
                state, status=TaskStatus.COMPENSATION_FAILED,
                end_reason=(f"compensation of step {event.step} failed: "
                            f"{event.error_type}: {event.error_message}"),
            )
        case ev.CompensationRetryRequested():
            return assigned(state, status=TaskStatus.COMPENSATING)
        case ev.StepSurplusSucceeded():
            return _with_surplus(
                state, event.step, event.attempt, data_json=event.data_json,
                compensation_attempt=1 if event.will_compensate else 0,
                status=(SurplusStatus.COMPENSATING if event.will_compensate
                        else SurplusStatus.UNCOMPENSATED),
            )
        case ev.TaskNeedsAttention():
            where = f"step {event.step} failed" if event.step else "the response builder failed"
            return assigned(
                state, status=TaskStatus.NEEDS_ATTENTION,
                end_reason=(f"{where} after the pivot {event.pivot}: {event.error_type}: "
                            f"{event.error_message}; nothing was compensated"),
            )
        case ev.CancellationRefused():
            if state.status is not TaskStatus.COMPENSATING:
                return state
            # The pivot completed while the task drained for a cancellation: forward again.
            return assigned(state, status=TaskStatus.RUNNING, ending=None, end_reason=None)
        case ev.ForwardRetryRequested():
            steps = {name: replaced(s, retry_base=s.attempt) if s.status is StepStatus.FAILED
                     else s for name, s in state.steps.items()}
            return assigned(state, status=TaskStatus.RUNNING, end_reason=None, steps=steps)
        case ev.StepSurplusCompensated():
            return _with_surplus(state, event.step, event.attempt,
                                 status=SurplusStatus.COMPENSATED)
        case ev.StepSurplusCompensationFailed():
            return _with_surplus(
                state, event.step, event.attempt,
                compensation_attempt=event.compensation_attempt + int(event.will_retry),
                status=(SurplusStatus.COMPENSATING if event.will_retry
                        else SurplusStatus.COMPENSATION_FAILED),
            )
        case ev.StepWaiting():
            return _with_step(
                state, event.step, status=StepStatus.WAITING, attempt=event.attempt,
                waiting_until_ms=event.until_ms, error_type=None, error_message=None,
            )
        case ev.SignalReceived():
            received = ReceivedSignal(event.step, event.signal_id, event.data_json)
            return assigned(state, signals=(*state.signals, received))
        case ev.TaskVersionMissing():
            if state.status is TaskStatus.VERSION_MISSING:
                return state
            return assigned(
                state, status=TaskStatus.VERSION_MISSING, parked_from=state.status,
                parked_reason=state.end_reason,
                end_reason=(f"version {event.definition_version} of {state.task_type} is not "
                            f"deployed (deployed: {event.deployed_versions}): parked until "
                            "its version is deployed again, an operator moves it to a "
                            "compatible version (POST /tasks/{id}/migrate?version=N) or "
                            "cancels it"))
        case ev.MessageParked():
            return assigned(state, parked=(*state.parked, event))
        case ev.TaskMigrated():
            return assigned(state, status=state.parked_from or state.status, parked_from=None,
                           end_reason=state.parked_reason, parked_reason=None,
                           parked=(), definition_version=event.to_version,
                           definition_fingerprint=event.fingerprint)
        case ev.MigrationRefused():
            return state
        case ev.CompensationSkipped():
            state = _with_step(state, event.step, status=StepStatus.COMPENSATION_SKIPPED)
            if state.steps_in(StepStatus.COMPENSATION_FAILED):
                return state  # another failed compensation still waits for the operator
            return assigned(state, status=TaskStatus.COMPENSATING)
        case ev.TaskResolved():
            return assigned(state, status=TaskStatus.RESOLVED,
                           end_reason=f"resolved by {event.resolved_by} (was "
                                      f"{event.from_status}): {event.reason}")
        case ev.TaskRedriven():
            return state
        case ev.ChildTaskStarted():
            return _with_step(
                state, event.step, status=StepStatus.RUNNING, attempt=event.attempt,
                error_type=None, error_message=None, trace_id=None, cancel_requested=False,
                child_task_id=event.child_task_id, child_status=None,
            )
        case ev.ChildTaskEnded():
            return _with_step(state, event.step, child_status=event.status)
        case ev.FanOutExpanded():
            fan_out = FanOutState.expanded(event.step, tuple(event.items_json))
            state = assigned(state, fan_outs={**state.fan_outs, event.step: fan_out})
            return _with_step(state, event.step, status=StepStatus.RUNNING,
                              attempt=event.attempt, error_type=None, error_message=None)
        case ev.FanOutCompleted():
            gathered = state.fan_outs[event.step].gathered_json()
            state = _with_step(state, event.step, status=StepStatus.COMPLETED,
                               data_json=gathered)
            return assigned(state, completion_order=(*state.completion_order, event.step))
        case ev.FanOutRetried():
            reopened = state.fan_outs[event.step].reopened(
                lambda s: replaced(s, status=StepStatus.PENDING, retry_base=s.attempt,
                                  error_type=None, error_message=None, trace_id=None))
            state = assigned(state, fan_outs={**state.fan_outs, event.step: reopened})
            return _with_step(state, event.step, status=StepStatus.RUNNING,
                              attempt=event.attempt, error_type=None, error_message=None)
        case ev.WorkflowValueRecorded():
            return state  # the workflow driver reads it from the history (tasksaga.workflow)
        case ev.WorkflowDiverged():
            return assigned(
                state, status=TaskStatus.NEEDS_ATTENTION,
                end_reason=(f"non-determinism at await #{event.command_index} "
                            f"({event.location}): the history records {event.expected}, the "
                            f"deployed code issued {event.got}; the workflow is suspended: "
                            "deploy code that replays its history (guard the change with "
                            "wf.patched), then retry it forward (POST "
                            "/tasks/{id}/retry-forward)"))
    raise TypeError(f"not a task event: {event!r}")

