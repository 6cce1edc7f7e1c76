"""The operator's repairs of a task that waits for one or is stuck (pure).

- Skip a compensation that failed for good: the step's effect stays (the operator's reason
  says why that is acceptable) and compensation goes on with the steps before it.
- Resolve a task in CompensationFailed or NeedsAttention: it ends as Resolved with the
  operator's reason; nothing more runs.
- Redrive a Running or Compensating task: resend the commands of its steps in flight as they
  were sent (same attempt, lease and idempotency key). A copy the worker already runs or
  answered is skipped by its guard and by the projections it checks, and a duplicate result
  is ignored by ``decide``, so resending is harmless. A resent ExecuteStep gets its full
  time again (a fresh deadline, its step-timeout timer moved there): a copy sent with the
  lost one's deadline could be skipped by a worker as expired.

Each repair is an event in the task's log, so the audit trail names who did what and why.
A repair the task's state does not allow records nothing (the API answers 409 before).
"""

from __future__ import annotations

from tasksaga.core import attempts
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.fan_out import steps_and_instances
from tasksaga.core.state import StepStatus, SurplusStatus, TaskStatus
from tasksaga.core.waits import WaitActions

#: The statuses each repair applies to (the API's 409s say the same).
SKIPPABLE = frozenset({TaskStatus.COMPENSATION_FAILED})
RESOLVABLE = frozenset({TaskStatus.COMPENSATION_FAILED, TaskStatus.NEEDS_ATTENTION})
REDRIVABLE = frozenset({TaskStatus.RUNNING, TaskStatus.COMPENSATING})


class RepairActions(WaitActions):
    def skip_compensation(self, command: msg.SkipCompensation) -> None:
        if self.state.status not in SKIPPABLE:
            return
        if self.state.step(command.step).status is not StepStatus.COMPENSATION_FAILED:
            return  # not the step that failed: nothing to skip
        self.emit(ev.CompensationSkipped(command.step, command.reason, command.requested_by,
                                         self.now))

    def resolve(self, command: msg.ResolveTask) -> None:
        if self.state.status not in RESOLVABLE:
            return
        self.emit(ev.TaskResolved(command.reason, command.requested_by,
                                  self.state.status.value, self.now))

    def redrive(self, command: msg.RedriveTask) -> None:
        if self.state.status not in REDRIVABLE:
            return
        pending = self.pending_commands()
        self.emit(ev.TaskRedriven([describe_command(c) for c in pending], command.reason,
                                  command.requested_by, self.now))
        for pending_command in pending:
            self.send(pending_command)
            if isinstance(pending_command, msg.ExecuteStep):
                self.schedule(pending_command.timeout_at_ms, msg.TimerKind.STEP_TIMEOUT,
                              pending_command.step, pending_command.attempt)

    def pending_commands(self) -> list[msg.StepCommand]:
        """The commands the task waits on an answer to, as they were sent."""
        state, definition = self.state, self.definition
        commands: list[msg.StepCommand] = []
        for step in steps_and_instances(state):  # a fan-out's instances, not its step
            if not definition.has_step(step.name):
                continue
            declared = definition.get_step(step.name)
            queue = definition.queue_of(declared)
            if step.status is StepStatus.RUNNING and step.cancel_requested:
                commands.append(msg.CancelStep(state.task_id, step.name, step.attempt, queue,
                                               "resent by an operator's redrive"))
            elif step.status is StepStatus.RUNNING:
                commands.append(msg.ExecuteStep(
                    task_id=state.task_id, task_type=state.task_type, step=step.name,
                    attempt=step.attempt, queue=queue, request_json=state.request_json,
                    step_data=attempts.data_read_by(state, declared),
                    idempotency_key=f"{state.task_id}:{step.name}:{step.attempt}",
                    timeout_at_ms=self.now + definition.dispatch_timeout_ms(declared),
                    fencing_token=step.fencing_token,
                    definition_version=definition.version,
                    artifacts=attempts.artifacts_consumed_by(state, declared)))
            elif step.status is StepStatus.COMPENSATING:
                commands.append(msg.CompensateStep(
                    task_id=state.task_id, task_type=state.task_type, step=step.name,
                    attempt=step.compensation_attempt, queue=queue,
                    request_json=state.request_json,
                    step_data={**attempts.data_read_by(state, declared),
                               **self.own_data(declared)},
                    idempotency_key=(f"{state.task_id}:{step.name}:compensate:"
                                     f"{step.compensation_attempt}"),
                    definition_version=definition.version, artifacts=dict(step.artifacts)))
            commands.extend(
                attempts.surplus_compensation(state, definition, declared, surplus.attempt)
                for surplus in step.surplus if surplus.status is SurplusStatus.COMPENSATING)
        return commands


def describe_command(command: msg.StepCommand) -> str:
    if isinstance(command, msg.CompensateStep) and command.surplus_attempt:
        return (f"CompensateStep {command.step}#{command.attempt} "
                f"(surplus of attempt {command.surplus_attempt})")
    return f"{type(command).__name__} {command.step}#{command.attempt}"
