"""Child tasks and depends_on: one task starting another, pure.

A child step (``task.child_step``) builds the child's request from the parent's context and
sends a ``SubmitTask`` through the parent's outbox, with an id derived from the parent, the
step and the attempt: a replayed or redelivered decision names the same child, whose own
rules ignore a second submission. The child's orchestrator tells the parent how it ended
(``ChildTaskFinished``, sent in the decision that records the child's terminal event); the
parent folds that into the step: its data is the child's response, any other end fails the
step (without retry: the child had its own retries).

Cancelling or compensating the parent reaches the child the same way: a running child step
is stopped by cancelling its child (which compensates itself), and a completed one is
compensated by ``CompensateTask``, which makes the completed child compensate its own steps in
reverse and end Cancelled. The parent's compensation waits for that answer.

``depends_on`` is the shell's half: when a task completes, the orchestrator adds a
``SubmitTask`` for each deployed type that depends on it (``downstream_submissions``), in the
same transaction as the completion, with an id derived from the upstream and the type: one
downstream task per upstream completion, whatever is redelivered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from pydantic import BaseModel, ValidationError

from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.pivot import passed_pivot
from tasksaga.core.state import StepStatus, TaskState, TaskStatus
from tasksaga.core.steps import ChildTask, StepDef
from tasksaga.core.waits import WaitActions

CHILD_REQUEST_ERROR = "ChildRequestError"
#: How a child ended that never started (its type is not deployed where it was submitted).
REJECTED = "Rejected"
_ENDINGS = (ev.TaskCompleted, ev.TaskFailed, ev.TaskCancelled, ev.TaskCompensationFailed,
            ev.TaskNeedsAttention)
# A child that ended so was undone (compensated, or never did anything lasting).
_UNDONE = (TaskStatus.CANCELLED.value, TaskStatus.FAILED.value)


def derived_task_id(*parts: object) -> str:
    """A UUID-shaped id that is a function of ``parts`` (the same parts, the same id)."""
    digest = hashlib.sha256(json.dumps(["tasksaga", *parts]).encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-a{digest[17:20]}-{digest[20:32]}"


def child_task_id(parent_task_id: str, step: str, attempt: int) -> str:
    return derived_task_id("child", parent_task_id, step, attempt)


def downstream_task_id(upstream_task_id: str, task_type: str) -> str:
    return derived_task_id("depends_on", upstream_task_id, task_type)


class ChildActions(WaitActions):
    """The rules of child steps (parent side) and of being a child (child side)."""

    def retry_compensation(self) -> None:
        """An operator's retry of a failed compensation (decide's rule)."""
        raise NotImplementedError

    # -- parent side ---------------------------------------------------------------------------

    def start(self, step: StepDef, attempt: int) -> None:
        if step.child is None:
            super().start(step, attempt)
        else:
            self.start_child(step, step.child, attempt)

    def start_child(self, step: StepDef, child: ChildTask, attempt: int) -> None:
        try:
            request = child.build_request(self.saga_context())
            expected = child.request_type or BaseModel
            if not isinstance(request, expected):
                raise TypeError(f"the request builder must return a {expected.__name__}, got "
                                f"{type(request).__name__}")
            request_json = request.model_dump_json()
        except Exception as error:  # user code: a broken builder fails its step
            self.fail_step(step.name, attempt, CHILD_REQUEST_ERROR,
                           f"{type(error).__name__}: {error}", False)
            return
        child_id = child_task_id(self.state.task_id, step.name, attempt)
        self.emit(ev.ChildTaskStarted(step.name, attempt, child_id, child.task_type, self.now))
        self.send(msg.SubmitTask(
            task_id=child_id, task_type=child.task_type, request_json=request_json,
            callback_url=None, idempotency_key=None, submitted_at_ms=self.now,
            tenant=self.state.tenant, submitted_by=self.state.submitted_by,
            parent_task_id=self.state.task_id, parent_step=step.name,
        ))

    def request_step_cancellation(self, name: str, reason: str) -> None:
        if self.definition.get_step(name).child is None:
            super().request_step_cancellation(name, reason)
            return
        step = self.state.step(name)
        if step.cancel_requested or step.child_task_id is None:
            return
        self.emit(ev.StepCancellationRequested(name, step.attempt, reason, self.now))
        self.send(msg.CancelTask(task_id=step.child_task_id,
                                 reason=f"parent task {self.state.task_id}: {reason}",
                                 requested_at_ms=self.now))

    def dispatch_compensation(self, step: StepDef, attempt: int) -> None:
        child_id = self.state.step(step.name).child_task_id
        if step.child is None or child_id is None:
            super().dispatch_compensation(step, attempt)
            return
        self.emit(ev.StepCompensationDispatched(step.name, attempt, self.now))
        # No timeout: the child's own compensations retry and time out; it answers once.
        self.send(msg.CompensateTask(
            task_id=child_id, parent_task_id=self.state.task_id,
            reason=f"parent task {self.state.task_id} compensates step {step.name}",
            requested_at_ms=self.now))

    def child_finished(self, report: msg.ChildTaskFinished) -> None:
        """Fold a child's end into its step: complete or fail it (running), or settle its
        compensation (compensating). A report of another attempt's child changes nothing."""
        if not self.definition.has_step(report.step) or \
                self.definition.get_step(report.step).child is None:
            return
        step = self.state.step(report.step)
        if step.child_task_id != report.child_task_id:
            return
        what = f"child task {report.child_task_id} ended {report.status}"
        why = f"{what}: {report.reason}" if report.reason else what
        if step.status is StepStatus.FAILED and report.status == TaskStatus.COMPLETED.value:
            # It completed after its step gave up on it (it had ended NeedsAttention, and an
            # operator took it forward): its effects must not stand unrecorded. Undo it.
            self.emit(ev.ChildTaskEnded(report.step, report.child_task_id, report.status,
                                        "completed after its step failed: compensating it",
                                        self.now))
            self.send(msg.CompensateTask(
                task_id=report.child_task_id, parent_task_id=self.state.task_id,
                reason=f"parent task {self.state.task_id} no longer waits for it (step "
                       f"{report.step} failed)", requested_at_ms=self.now))
        elif step.status is StepStatus.RUNNING:
            self.emit(ev.ChildTaskEnded(report.step, report.child_task_id, report.status,
                                        report.reason, self.now))
            if report.status == TaskStatus.COMPLETED.value:
                self.emit(ev.StepCompleted(report.step, step.attempt,
                                           report.response_json or "{}", self.now))
            else:
                self.fail_step(report.step, step.attempt, f"ChildTask{report.status}", why,
                               False)
        elif step.status is StepStatus.COMPENSATING:
            # The child ended once already (Completed): its second end is its compensation's,
            # recorded as the step's compensation outcome.
            if report.status in _UNDONE:
                self.emit(ev.StepCompensated(report.step, step.compensation_attempt, self.now))
                return
            # Its compensation failed, or it refused (past its pivot): an operator decides.
            error = f"ChildTask{report.status}"
            self.emit(ev.StepCompensationFailed(report.step, step.compensation_attempt, error,
                                                why, False, self.now))
            self.emit(ev.TaskCompensationFailed(report.step, error, why, self.now))

    # -- child side ----------------------------------------------------------------------------

    def compensate_task(self, command: msg.CompensateTask) -> None:
        """The parent compensates past this completed child: undo its steps in reverse and
        end Cancelled; a child past its pivot refuses, and says so to its parent."""
        if self.state.parent_task_id != command.parent_task_id:
            return  # only its own parent may undo a completed task
        status = self.state.status
        if status is TaskStatus.COMPENSATION_FAILED:
            self.retry_compensation()  # the parent's operator retried: so does the child
        elif status is TaskStatus.COMPLETED:
            pivot = passed_pivot(self.definition, self.state)
            if pivot is not None:
                self.emit(ev.CancellationRefused(command.reason, pivot, self.now))
                self.report_to_parent(f"passed its pivot {pivot}: nothing can be compensated")
                return
            self.emit(ev.CancellationRequested(command.reason, self.now))
            self.start_compensation(command.reason)
        elif status.is_terminal:  # already undone: say so again, the parent waits for it
            self.report_to_parent(self.state.end_reason)

    def report_end_to_parent(self) -> None:
        """Tell the parent when this decision ended the task (called after every rule)."""
        if any(isinstance(event, _ENDINGS) for event in self.decision.events):
            self.report_to_parent(self.state.end_reason)

    def report_to_parent(self, reason: str | None) -> None:
        report = parent_report(self.state, reason, self.now)
        if report is not None:
            self.send(report)


def parent_report(state: TaskState, reason: str | None,
                  now_ms: int) -> msg.ChildTaskFinished | None:
    """What a child tells its parent about how it ended (None: not a child, or started by
    depends_on: nobody waits for it). Shared by sagas and workflows."""
    if state.parent_task_id is None or state.parent_step is None:
        return None
    completed = state.status is TaskStatus.COMPLETED
    return msg.ChildTaskFinished(
        task_id=state.parent_task_id, step=state.parent_step, child_task_id=state.task_id,
        status=state.status.value, response_json=state.response_json if completed else None,
        reason=reason, finished_at_ms=now_ms)


def child_not_started(command: msg.Inbound, reason: str,
                      now_ms: int) -> msg.ChildTaskFinished | None:
    """The answer to a parent whose child's submission no orchestrator can decide (its type
    is not deployed): the child ended Rejected, so the parent's step fails instead of
    waiting for ever. None for anything else (a dead letter, as before)."""
    if not isinstance(command, msg.SubmitTask) or command.parent_task_id is None \
            or command.parent_step is None:
        return None
    return msg.ChildTaskFinished(
        task_id=command.parent_task_id, step=command.parent_step, child_task_id=command.task_id,
        status=REJECTED, response_json=None, reason=reason, finished_at_ms=now_ms)


def downstream_submissions(
    state: TaskState, events: Iterable[ev.TaskEvent], dependents: Iterable[TaskDefinition],
    now_ms: int,
) -> tuple[list[msg.SubmitTask], list[str]]:
    """The tasks to start because this decision completed ``state``'s task: one per type that
    depends on it, its response as their request; and, in words, the types whose request
    model refuses that response (not started: the shell logs them)."""
    if not any(isinstance(event, ev.TaskCompleted) for event in events):
        return [], []
    response = state.response_json or "{}"
    submissions, refused = [], []
    for downstream in dependents:
        try:
            downstream.request_type.model_validate_json(response)
        except ValidationError as error:
            refused.append(f"{downstream.name} not started after {state.task_type} "
                           f"{state.task_id}: its request refuses the response ({error})")
            continue
        submissions.append(msg.SubmitTask(
            task_id=downstream_task_id(state.task_id, downstream.name),
            task_type=downstream.name, request_json=response, callback_url=None,
            idempotency_key=None, submitted_at_ms=now_ms, tenant=state.tenant,
            submitted_by=state.submitted_by, parent_task_id=state.task_id))
    return submissions, refused
