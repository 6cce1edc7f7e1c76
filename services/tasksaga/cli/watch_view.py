"""What ``watch`` shows: each step's state and progress, folded from the live messages. Pure.

It starts from ``GET /tasks/{id}`` (the steps in their order, their state when the watch
began) and applies each message of the SSE stream (docs/live.md, "Messages").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

# The step state each step event leads to, as ``GET /tasks/{id}`` names it.
STEP_STATUS_AFTER = {
    "StepDispatched": "Running",
    "StepCompleted": "Completed",
    "StepFailed": "Failed",
    "StepRetryScheduled": "RetryScheduled",
    "StepSkipped": "Skipped",
    "StepWaiting": "Waiting",
    "StepCompensationDispatched": "Compensating",
    "StepCompensated": "Compensated",
    "StepCompensationFailed": "CompensationFailed",
    "StepCompensationRetryScheduled": "CompensationRetryScheduled",
}
TASK_STATUS_AFTER = {
    "TaskSubmitted": "Running",
    "CompensationStarted": "Compensating",
    "CompensationRetryRequested": "Compensating",
    "ForwardRetryRequested": "Running",
    "TaskVersionMissing": "VersionMissing",
    "TaskMigrated": "Running",
}
DONE = frozenset({"Completed", "Skipped", "Compensated"})


@dataclass(frozen=True)
class StepView:
    name: str
    status: str = "Pending"
    attempt: int = 0
    progress: float | None = None
    message: str | None = None

    @property
    def fraction(self) -> float:
        """How full the step's bar is: its reported progress, or full once it is done."""
        if self.status in DONE:
            return 1.0
        return min(max(self.progress or 0.0, 0.0), 1.0)


@dataclass(frozen=True)
class WatchView:
    task_id: str
    status: str
    steps: tuple[StepView, ...]
    last_version: int = 0  # the last event version applied: where a reconnection resumes
    ended: bool = False  # the stream's ``end`` came: ``status`` is the outcome

    def step(self, name: str) -> StepView | None:
        return next((s for s in self.steps if s.name == name), None)

    def with_step(self, view: StepView) -> WatchView:
        if self.step(view.name) is None:
            return replace(self, steps=(*self.steps, view))
        return replace(self, steps=tuple(view if s.name == view.name else s
                                         for s in self.steps))


def seed(document: dict[str, Any]) -> WatchView:
    """The view of a status document; events are replayed from the start onto the steps."""
    return WatchView(task_id=document["task_id"], status=document["status"],
                     steps=tuple(StepView(s["step"]) for s in document["steps"]))


def apply(view: WatchView, message: dict[str, Any]) -> WatchView:
    """The view after one live message (``event``, ``progress``, ``end``; others change
    nothing)."""
    kind = message.get("type")
    if kind == "end":
        return replace(view, status=str(message.get("status") or view.status), ended=True)
    if kind == "progress":
        return _progress(view, message)
    if kind != "event":
        return view
    version = int(message.get("version") or 0)
    if version <= view.last_version:
        return view  # already applied (a resumed stream never repeats one, but be sure)
    view = replace(view, last_version=version)
    event_type = str(message.get("event_type"))
    if message.get("terminal") and message.get("status"):
        view = replace(view, status=str(message["status"]))
    elif event_type in TASK_STATUS_AFTER:
        view = replace(view, status=TASK_STATUS_AFTER[event_type])
    step_name = message.get("step")
    if not step_name or event_type not in STEP_STATUS_AFTER:
        return view
    step = view.step(step_name) or StepView(step_name)
    status = STEP_STATUS_AFTER[event_type]
    attempt = int(message.get("attempt") or step.attempt)
    fresh = event_type == "StepDispatched" and attempt != step.attempt
    return view.with_step(replace(
        step, status=status, attempt=attempt,
        progress=None if fresh else step.progress, message=None if fresh else step.message))


def _progress(view: WatchView, message: dict[str, Any]) -> WatchView:
    step = view.step(str(message.get("step")))
    attempt = int(message.get("attempt") or 0)
    if step is None or attempt < step.attempt:
        return view  # a late beat of an earlier attempt
    value = message.get("progress")
    return view.with_step(replace(
        step, attempt=attempt, progress=float(value) if value is not None else step.progress,
        message=message.get("message") or step.message))
