"""The exceptions a workflow body sees at an ``await`` (tasksaga.workflow).

``StepFailed`` carries the failed step's error type and message, as the step worker reported
them; the body may catch it (the saga by ``try``/``except``). ``WorkflowCancelled`` is thrown
at the ``await`` the body is stopped at when the task is cancelled (API, timeout): ``except``
and ``finally`` blocks run, and may await compensation steps.
"""

from __future__ import annotations


class StepFailed(Exception):
    """A step failed for good (its retries spent), a signal timed out, or a wait was
    superseded."""

    def __init__(self, step: str, error_type: str, error_message: str) -> None:
        self.step = step
        self.error_type = error_type
        self.error_message = error_message
        super().__init__(f"step {step} failed: {error_type}: {error_message}")


class SignalTimedOut(StepFailed):
    """``wf.signal(..., timeout=)`` passed without the signal."""


class ChildFailed(StepFailed):
    """A child task (``wf.child``) ended otherwise than Completed: ``status`` is how it ended
    (Failed, Cancelled, CompensationFailed, or Rejected when its type is not deployed) and
    ``reason`` why. A ``StepFailed``: an ``except StepFailed`` catches it too."""

    def __init__(self, step: str, child_task_id: str, status: str, reason: str) -> None:
        self.child_task_id, self.status, self.reason = child_task_id, status, reason
        super().__init__(step, f"ChildTask{status}",
                         f"child task {child_task_id} ended {status}: {reason}")


class ChildCompensationFailed(ChildFailed):
    """``wf.compensate_child`` could not undo the child: its compensation failed, or it
    refused (past its pivot; a workflow child is never compensated by its parent)."""


class WorkflowCancelled(Exception):
    """The task was cancelled (by the API or its timeout) while the body awaited."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"workflow cancelled: {reason}")


class WorkflowError(Exception):
    """The body misused the workflow API (awaited a foreign awaitable, waited twice for one
    signal, returned the wrong type): the task fails with this message."""


class Diverged(BaseException):
    """Raised inside the body when replay issues a different command than the history
    records. The driver catches it and suspends the task."""

    def __init__(self, index: int, location: str, expected: str, got: str) -> None:
        self.index, self.location, self.expected, self.got = index, location, expected, got
        super().__init__(f"non-determinism at await #{index} ({location}): the history "
                         f"records {expected}, the code issued {got}")
