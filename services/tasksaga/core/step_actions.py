"""What the saga rules do to a step: fail it (retry or compensate), dispatch it, stop it,
compensate it. Pure: each action records events, commands and timers in the decision.
"""

from __future__ import annotations

from tasksaga.core import attempts
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.chains import chain_after
from tasksaga.core.decision import DecisionRecorder
from tasksaga.core.pivot import passed_pivot
from tasksaga.core.stage_progress import satisfiable, satisfied
from tasksaga.core.state import StepStatus, TaskStatus
from tasksaga.core.steps import StepDef

CANCELLED = attempts.CANCELLED


class StepActions(DecisionRecorder):
    """The actions the inbound-message rules (``tasksaga.core.decide``) are built from."""

    def fail_step(
        self, name: str, attempt: int, error_type: str, message: str, retryable: bool,
        trace_id: str | None = None, lineage: list[str] | None = None,
    ) -> None:
        step = self.definition.get_step(name)
        policy = self.definition.retry_policy_of(step)
        stage = self.definition.stage_of(name)
        wanted = self.state.status is TaskStatus.RUNNING and not satisfied(self.state, stage)
        # After an operator's forward retry the policy's budget starts afresh.
        counted = attempt - self.state.step(name).retry_base
        will_retry = (wanted and retryable
                      and policy.allows_retry(counted, error_type, lineage or ()))
        self.emit(ev.StepFailed(name, attempt, error_type, message, will_retry, self.now,
                                trace_id))
        if will_retry:
            fire_at = self.now + policy.delay_before(counted + 1, self.random())
            self.emit(ev.StepRetryScheduled(name, attempt + 1, fire_at))
            self.schedule(fire_at, msg.TimerKind.STEP_RETRY, name, attempt + 1)
        elif (wanted and not satisfiable(self.state, stage)
              and passed_pivot(self.definition, self.state) is None):
            # Past the pivot nothing is compensated: the stage's other members finish, then
            # the task waits for an operator (decide's advance_forward).
            self.start_compensation(f"step {name} failed: {error_type}: {message}")

    def fail_compensation(
        self, name: str, attempt: int, error_type: str, message: str, trace_id: str | None,
        lineage: list[str] | None = None,
    ) -> None:
        policy = self.definition.compensation_retry_of(self.definition.get_step(name))
        will_retry = policy.allows_retry(attempt, error_type, lineage or ())
        self.emit(ev.StepCompensationFailed(name, attempt, error_type, message, will_retry,
                                            self.now, trace_id))
        if will_retry:
            fire_at = self.now + policy.delay_before(attempt + 1, self.random())
            self.emit(ev.StepCompensationRetryScheduled(name, attempt + 1, fire_at))
            self.schedule(fire_at, msg.TimerKind.COMPENSATION_RETRY, name, attempt + 1)
        else:
            self.emit(ev.TaskCompensationFailed(name, error_type, message, self.now, trace_id))

    def start_compensation(self, reason: str) -> None:
        self.emit(ev.CompensationStarted(reason, self.now))
        for step in self.state.steps_in(StepStatus.RETRY_SCHEDULED):
            self.emit(ev.StepFailed(step.name, step.attempt, CANCELLED,
                                    "not retried: the task is compensating", False, self.now))
        for step in self.state.steps_in(StepStatus.RUNNING):
            self.request_step_cancellation(step.name, reason)

    def request_step_cancellation(self, name: str, reason: str) -> None:
        step = self.state.step(name)
        if step.cancel_requested:
            return
        self.emit(ev.StepCancellationRequested(name, step.attempt, reason, self.now))
        self.send(msg.CancelStep(
            task_id=self.state.task_id, step=name, attempt=step.attempt,
            queue=self.definition.queue_of(self.definition.get_step(name)), reason=reason,
        ))

    def dispatch(self, step: StepDef, attempt: int) -> None:
        if attempt == 1 and self.state.step(step.name).chain_reserved:
            attempt = 2  # attempt 1 is a chain's, which may still run it (core.chains)
        queue = self.definition.queue_of(step)
        # Until a worker reports the attempt started, it may wait in the queue (start timeout)
        # and then run (step timeout); the start report moves the deadline to start + step
        # timeout (decide's heartbeat rule).
        timeout_at = self.now + self.definition.dispatch_timeout_ms(step)
        # The lease's fencing token: the version StepDispatched takes, so every later dispatch
        # of the task holds a larger one.
        token = self.state.version + 1
        chain = chain_after(self.definition, self.state, step, attempt) if self.chains else []
        # The data the step reads, and what its chain's steps read of what exists now (the
        # worker adds each chained step's own predecessors' data as they complete).
        step_data = attempts.data_read_by(self.state, step)
        for name in chain:
            step_data.update(attempts.data_read_by(self.state, self.definition.get_step(name)))
        self.emit(ev.StepDispatched(step.name, attempt, queue, self.now, timeout_at, token,
                                    chain))
        self.send(msg.ExecuteStep(
            task_id=self.state.task_id, task_type=self.state.task_type, step=step.name,
            attempt=attempt, queue=queue, request_json=self.state.request_json,
            step_data=step_data,
            idempotency_key=f"{self.state.task_id}:{step.name}:{attempt}",
            timeout_at_ms=timeout_at, fencing_token=token,
            definition_version=self.definition.version,
            artifacts=attempts.artifacts_consumed_by(self.state, step), then=chain,
        ))
        # The heartbeat deadline is armed by the worker's start report too.
        self.schedule(timeout_at, msg.TimerKind.STEP_TIMEOUT, step.name, attempt)

    def dispatch_compensation(self, step: StepDef, attempt: int) -> None:
        self.emit(ev.StepCompensationDispatched(step.name, attempt, self.now))
        self.send(msg.CompensateStep(
            task_id=self.state.task_id, task_type=self.state.task_type, step=step.name,
            attempt=attempt, queue=self.definition.queue_of(step),
            request_json=self.state.request_json,
            step_data={**attempts.data_read_by(self.state, step), **self.own_data(step)},
            idempotency_key=f"{self.state.task_id}:{step.name}:compensate:{attempt}",
            definition_version=self.definition.version,
            artifacts=dict(self.state.step(step.name).artifacts),
        ))
        timeout_at = self.now + self.definition.step_timeout_ms(step)
        self.schedule(timeout_at, msg.TimerKind.COMPENSATION_TIMEOUT, step.name, attempt)

    def own_data(self, step: StepDef) -> dict[str, str]:
        data = self.state.step(step.name).data_json
        return {} if data is None else {step.name: data}
