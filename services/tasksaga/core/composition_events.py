"""Events of tasks built from other work: child tasks, for_each fan-outs and code-first
workflows. Part of the TaskEvent union of ``tasksaga.core.events``, which re-exports them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChildTaskStarted:
    """A child step started its child task (``child_task_id``, derived from this task, the
    step and the attempt, so a replay never starts two)."""

    step: str
    attempt: int
    child_task_id: str
    child_task_type: str
    started_at_ms: int


@dataclass(frozen=True)
class ChildTaskEnded:
    """The child of a running child step ended with ``status``: the step then completes (its
    data is the child's response) or fails. The end of the child's compensation is recorded
    as the step's (StepCompensated, StepCompensationFailed)."""

    step: str
    child_task_id: str
    status: str
    reason: str | None
    ended_at_ms: int


@dataclass(frozen=True)
class FanOutExpanded:
    """A for_each step was reached: its items (JSON, in item order) are fixed here; instance
    ``i`` is the step ``<step>[i]``, dispatched like any step."""

    step: str
    attempt: int
    items_json: list[str]
    expanded_at_ms: int


@dataclass(frozen=True)
class FanOutCompleted:
    """Enough instances of a for_each step succeeded (all, one or a quorum): the step
    completes, its data the completed instances' data as a list in item order."""

    step: str
    succeeded: int
    of: int
    completed_at_ms: int


@dataclass(frozen=True)
class FanOutRetried:
    """An operator's forward retry reached a for_each step that failed after the pivot: its
    failed instances run again, each with a fresh retry budget; the others keep their
    results."""

    step: str
    attempt: int
    retried: int
    requested_at_ms: int


@dataclass(frozen=True)
class WorkflowValueRecorded:
    """A code-first workflow read a value that must replay the same: ``wf.now()``,
    ``wf.random()``, ``wf.uuid()`` or a ``wf.patched(id)`` marker (tasksaga.workflow).
    ``name`` is the command's name in the workflow's history (``now``, ``uuid#2``,
    ``patch:charge-v2``). ``data_json`` is the value (sealed at rest like all task data)."""

    name: str
    kind: str
    data_json: str
    recorded_at_ms: int


@dataclass(frozen=True)
class WorkflowDiverged:
    """Replaying a workflow's history with the deployed code issued a different command than
    the history records (non-determinism): the task is suspended (NeedsAttention) until an
    operator deploys code that replays it and retries it forward."""

    command_index: int  # 1-based: the n-th command (await) of the workflow
    location: str  # where in the workflow's source the code issued it
    expected: str  # what the history records there
    got: str  # what the code issued instead
    diverged_at_ms: int
