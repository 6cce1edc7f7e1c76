"""Child tasks of a workflow (``wf.child``), pure: the child-task machinery of the sagas
(``tasksaga.core.children``) seen from a workflow's decide.

A child await is recorded as ``ChildTaskStarted`` and sends a ``SubmitTask`` through the
workflow's outbox with the id ``child_task_id(parent, await name, 1)``: the await's name is
its position among the body's awaits of that type (``CreateZip``, ``CreateZip#2``), so a
replay names the same child and never starts two. The child's ``ChildTaskFinished`` becomes
``ChildTaskEnded`` and then ``StepCompleted`` (its response) or ``StepFailed``, which the
driver turns into the await's value or ``ChildFailed``. The body no longer waiting for it
(a cancellation, a ``wf.any`` it lost, the body's end) cancels a running child with
``CancelTask``; ``wf.compensate_child`` sends ``CompensateTask`` and records the answer as the
step's compensation (``StepCompensated`` / ``StepCompensationFailed``).

A workflow that is itself a child tells its parent how it ended, and refuses a
``CompensateTask``: only its body knows how to undo what it did.
"""

from __future__ import annotations

from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.children import child_task_id, parent_report
from tasksaga.core.decision import DecisionRecorder
from tasksaga.core.state import StepStatus, TaskStatus
from tasksaga.workflow.commands import Command

_ENDINGS = (ev.TaskCompleted, ev.TaskFailed, ev.TaskCancelled)
_UNDONE = (TaskStatus.CANCELLED.value, TaskStatus.FAILED.value)
REFUSED = ("a workflow is not compensated by its parent: undo its effects in its body "
           "(try/except), or compensate in the parent")


class WorkflowChildRules(DecisionRecorder):
    """The child rules of ``_WorkflowRules`` (tasksaga.workflow.decide)."""

    # -- parent side ---------------------------------------------------------------------------

    def start_child(self, command: Command) -> None:
        child_id = child_task_id(self.state.task_id, command.name, 1)
        self.emit(ev.ChildTaskStarted(command.name, 1, child_id, command.child_type, self.now))
        self.send(msg.SubmitTask(
            task_id=child_id, task_type=command.child_type, request_json=command.argument_json,
            callback_url=None, idempotency_key=None, submitted_at_ms=self.now,
            tenant=self.state.tenant, submitted_by=self.state.submitted_by,
            parent_task_id=self.state.task_id, parent_step=command.name))

    def stop_child(self, name: str, reason: str) -> bool:
        """Cancel the child of ``name`` if it runs; False when ``name`` is not a child."""
        step = self.state.step(name)
        if step.child_task_id is None:
            return False
        if step.status is StepStatus.RUNNING and not step.cancel_requested:
            self.emit(ev.StepCancellationRequested(name, step.attempt, reason, self.now))
            self.send(msg.CancelTask(task_id=step.child_task_id,
                                     reason=f"parent task {self.state.task_id}: {reason}",
                                     requested_at_ms=self.now))
        return True

    def compensate_child(self, command: Command) -> None:
        step = self.state.step(command.name)
        assert step.child_task_id is not None  # the driver checked it completed
        self.emit(ev.StepCompensationDispatched(command.name, 1, self.now))
        self.send(msg.CompensateTask(
            task_id=step.child_task_id, parent_task_id=self.state.task_id,
            reason=f"parent task {self.state.task_id} compensates child {command.name}",
            requested_at_ms=self.now))

    def child_finished(self, report: msg.ChildTaskFinished) -> None:
        """Fold a child's end into its await: its first end completes or fails it, the end
        of a compensation settles ``wf.compensate_child``. A report of another child (or a
        repeated one) changes nothing."""
        step = self.state.step(report.step)
        if step.child_task_id != report.child_task_id:
            return
        what = f"child task {report.child_task_id} ended {report.status}"
        if step.status is StepStatus.RUNNING:
            self.emit(ev.ChildTaskEnded(report.step, report.child_task_id, report.status,
                                        report.reason, self.now))
            completed = report.status == TaskStatus.COMPLETED.value
            if completed and (step.cancel_requested or self.state.status.is_terminal):
                # The body no longer waits for it (cancelled, a wf.any it lost): its effects
                # stand on record, as a step's surplus success does.
                self.emit(ev.StepSurplusSucceeded(report.step, step.attempt,
                                                  report.response_json or "{}", False,
                                                  self.now))
            elif completed:
                self.emit(ev.StepCompleted(report.step, step.attempt,
                                           report.response_json or "{}", self.now))
            else:
                self.emit(ev.StepFailed(report.step, step.attempt, f"ChildTask{report.status}",
                                        report.reason or what, False, self.now))
        elif step.status is StepStatus.FAILED and report.status == TaskStatus.COMPLETED.value:
            # It completed after its await failed (it had ended NeedsAttention, and an
            # operator took it forward): its effects stand, on record; undoing them is the
            # body's business, as for a step's surplus success.
            self.emit(ev.ChildTaskEnded(report.step, report.child_task_id, report.status,
                                        "completed after its await failed", self.now))
            self.emit(ev.StepSurplusSucceeded(report.step, step.attempt,
                                              report.response_json or "{}", False, self.now))
        elif step.status is StepStatus.COMPENSATING:
            if report.status in _UNDONE:
                self.emit(ev.StepCompensated(report.step, step.compensation_attempt, self.now))
            else:
                self.emit(ev.StepCompensationFailed(report.step, step.compensation_attempt,
                                                    f"ChildTask{report.status}",
                                                    report.reason or what, False, self.now))

    # -- child side ----------------------------------------------------------------------------

    def refuse_compensation(self, command: msg.CompensateTask) -> None:
        """A workflow child's parent asks it to undo itself: it cannot (the saga rules undo
        declared steps in reverse; a workflow declares none)."""
        if self.state.parent_task_id != command.parent_task_id:
            return
        if self.state.status is TaskStatus.COMPLETED:
            # An event, not only the answer: a decision's commands are numbered by the
            # version it writes, and the answer must not reuse the completion report's id.
            self.emit(ev.CancellationRefused(f"{command.reason}: {REFUSED}", "", self.now))
            self._report(REFUSED)
        elif self.state.status.is_terminal:  # already undone: say so again
            self._report(self.state.end_reason)

    def report_end_to_parent(self) -> None:
        """Tell the parent when this decision ended the task. A suspended child
        (WorkflowDiverged) is not ended: the parent waits for it to be taken forward."""
        if any(isinstance(event, _ENDINGS) for event in self.decision.events):
            self._report(self.state.end_reason)

    def _report(self, reason: str | None) -> None:
        report = parent_report(self.state, reason, self.now)
        if report is not None:
            self.send(report)
