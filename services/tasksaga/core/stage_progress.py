"""Where a stage stands: done (satisfied), or still able to be done (satisfiable). Pure.

A stage needs all of its members, one, or a quorum of them to complete (its await mode);
skipped members (a false condition) do not count against it.
"""

from __future__ import annotations

from tasksaga.core.state import StepStatus, TaskState
from tasksaga.core.steps import Stage

_UNFINISHED = (StepStatus.PENDING, StepStatus.RUNNING, StepStatus.RETRY_SCHEDULED,
               StepStatus.WAITING)


def _count(state: TaskState, stage: Stage, *statuses: StepStatus) -> int:
    return sum(1 for s in stage.steps if state.step(s.name).status in statuses)


def satisfied(state: TaskState, stage: Stage) -> bool:
    """Every member was launched and enough of them completed."""
    required = stage.required_successes(_count(state, stage, StepStatus.SKIPPED))
    launched = _count(state, stage, StepStatus.PENDING) == 0
    return launched and _count(state, stage, StepStatus.COMPLETED) >= required


def satisfiable(state: TaskState, stage: Stage) -> bool:
    """Enough members completed or may still complete."""
    required = stage.required_successes(_count(state, stage, StepStatus.SKIPPED))
    possible = _count(state, stage, StepStatus.COMPLETED, *_UNFINISHED)
    return possible >= required
