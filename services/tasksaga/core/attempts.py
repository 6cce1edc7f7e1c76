"""Attempts of one step that overlap: leases, late successes and surplus effects (pure).

Two attempts of a step can both run: a timed-out attempt that was still working, a command
redelivered after a rebalance. Each dispatch holds a lease whose fencing token grows with every
dispatch of the task; failures and heartbeats count only from the lease holder. A success is
different: its effect exists whoever sent it, so it either becomes the step's recorded effect or
is a *surplus* effect, recorded and compensated on its own with that attempt's data.
"""

from __future__ import annotations

from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.artifacts import indexed_name, refs_for
from tasksaga.core.chains import read_by
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.state import StepState, StepStatus, SurplusStatus, TaskState
from tasksaga.core.steps import StepDef

CANCELLED = "Cancelled"
SUPERSEDED = "Superseded"

# The step's data is the effect of its recorded attempt (``StepState.attempt``).
_EFFECT_RECORDED = (
    StepStatus.COMPLETED, StepStatus.COMPENSATING, StepStatus.COMPENSATION_RETRY_SCHEDULED,
    StepStatus.COMPENSATED, StepStatus.COMPENSATION_FAILED,
)


def holds_lease(step: StepState,
                result: msg.StepSucceeded | msg.StepAttemptFailed | msg.StepHeartbeat) -> bool:
    """The result comes from the step's current dispatch (attempt and fencing token; a token of
    0 comes from a worker, or a dispatch, that predates tokens)."""
    return step.status is StepStatus.RUNNING and step.attempt == result.attempt and (
        result.fencing_token in (0, step.fencing_token) or step.fencing_token == 0
    )


def completes_step(state: TaskState, step: StepState, result: msg.StepSucceeded) -> bool:
    """Whether this success becomes the step's recorded effect."""
    if state.status.is_terminal:
        return False
    # A late success of an earlier attempt still counts: the work was done, and recording it
    # means it will be compensated if the task fails. A result for the running attempt number
    # under another lease is not its holder's.
    if step.status is StepStatus.RUNNING:
        return result.attempt < step.attempt or holds_lease(step, result)
    return step.status is StepStatus.RETRY_SCHEDULED or (
        step.status is StepStatus.FAILED and step.error_type in (CANCELLED, SUPERSEDED)
    )


def already_recorded(step: StepState, result: msg.StepSucceeded) -> bool:
    """A duplicate: this attempt's effect is the step's, or a surplus already recorded."""
    return ((step.attempt == result.attempt and step.status in _EFFECT_RECORDED)
            or step.surplus_of(result.attempt) is not None)


def data_read_by(state: TaskState, step: StepDef) -> dict[str, str]:
    """Only the data the step declares it reads travels with its commands, so commands do not
    grow with every earlier step; without a declaration, every completed step's."""
    return read_by(step, state.step_data())


def artifacts_consumed_by(state: TaskState, step: StepDef) -> dict[str, str]:
    """The references of the artifacts ``step`` consumes, from the steps completed so far."""
    if not step.consumes:
        return {}
    return refs_for(step.consumes, (_published_by(state, name) for name in state.completion_order))


def _published_by(state: TaskState, name: str) -> dict[str, str]:
    """What completed step ``name`` published; of a for_each step, what each completed
    instance published, as ``artifact[index]`` (the instance's index)."""
    fan_out = state.fan_outs.get(name) if state.fan_outs else None
    if fan_out is None:
        return dict(state.steps[name].artifacts) if name in state.steps else {}
    found: dict[str, str] = {}
    for index, instance in enumerate(fan_out.instances):
        if instance is not None and instance.status is StepStatus.COMPLETED:
            found.update({indexed_name(artifact, index): ref
                          for artifact, ref in instance.artifacts})
    return found


def surplus_compensation(state: TaskState, definition: TaskDefinition, step: StepDef,
                         surplus_attempt: int) -> msg.CompensateStep:
    """The command undoing a surplus effect; sent right after the event that set its
    compensation attempt (commands are named after the stream version)."""
    surplus = state.step(step.name).surplus_of(surplus_attempt)
    if surplus is None:
        raise ValueError(f"step {step.name!r} has no surplus effect of attempt {surplus_attempt}")
    attempt = surplus.compensation_attempt
    return msg.CompensateStep(
        task_id=state.task_id, task_type=state.task_type, step=step.name, attempt=attempt,
        queue=definition.queue_of(step), request_json=state.request_json,
        step_data={**data_read_by(state, step), step.name: surplus.data_json},
        idempotency_key=f"{state.task_id}:{step.name}:compensate-surplus:{surplus_attempt}:"
                        f"{attempt}",
        surplus_attempt=surplus_attempt, definition_version=definition.version,
    )


def _compensating(state: TaskState, step: str, surplus_attempt: int, attempt: int) -> bool:
    surplus = state.step(step).surplus_of(surplus_attempt)
    return (surplus is not None and surplus.status is SurplusStatus.COMPENSATING
            and surplus.compensation_attempt == attempt)


def surplus_compensated(state: TaskState, result: msg.CompensationSucceeded,
                        now: int) -> ev.StepSurplusCompensated | None:
    if not _compensating(state, result.step, result.surplus_attempt, result.attempt):
        return None  # stale or duplicated
    return ev.StepSurplusCompensated(result.step, result.surplus_attempt, now)


def surplus_compensation_failed(
    state: TaskState, definition: TaskDefinition, result: msg.CompensationAttemptFailed,
    now: int,
) -> ev.StepSurplusCompensationFailed | None:
    """Retried at once when the step's compensation retries allow (no timer: a lost command
    is redelivered by Kafka, as the worker commits it only once its result is acknowledged)."""
    if not _compensating(state, result.step, result.surplus_attempt, result.attempt):
        return None
    policy = definition.compensation_retry_of(definition.get_step(result.step))
    return ev.StepSurplusCompensationFailed(
        result.step, result.surplus_attempt, result.attempt, result.error_type,
        result.error_message, policy.allows_retry(result.attempt, result.error_type,
                                                result.error_lineage), now,
        result.trace_id)
