"""The point of no return: a pivot step, once completed, turns the saga forward-only. Pure.

The log alone says whether a task passed its pivot: the pivot's StepCompleted is in it (the
fold keeps completions in ``completion_order``). No flag of its own, so a replay of any log,
old or new, gives the same answer.
"""

from __future__ import annotations

from tasksaga.core.definition import TaskDefinition
from tasksaga.core.stage_progress import satisfiable
from tasksaga.core.state import StepState, StepStatus, TaskState
from tasksaga.core.steps import Stage

_UNFINISHED = (StepStatus.PENDING, StepStatus.RUNNING, StepStatus.RETRY_SCHEDULED)
# Failures that say another step's outcome stopped this one, not why the stage failed.
_NOT_THE_CAUSE = ("Cancelled", "Superseded")


def passed_pivot(definition: TaskDefinition, state: TaskState) -> str | None:
    """The name of the pivot step that completed, or None before the point of no return."""
    for name in state.completion_order:
        if definition.has_step(name) and definition.get_step(name).pivot:
            return name
    return None


def stuck_forward(state: TaskState, stage: Stage) -> StepState | None:
    """The failed member that makes ``stage`` impossible once every member has finished;
    None while the stage may still succeed or a member is still running or retrying."""
    if satisfiable(state, stage):
        return None
    members = [state.step(s.name) for s in stage.steps]
    if any(m.status in _UNFINISHED for m in members):
        return None  # forward recovery: what still runs may finish first
    failed = [m for m in members if m.status is StepStatus.FAILED]
    causes = [m for m in failed if m.error_type not in _NOT_THE_CAUSE]
    return next(iter(causes or failed), None)
