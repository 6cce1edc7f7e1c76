"""decide(definition, state, message, now, random) -> Decision: the saga's rules, pure.

Every inbound message (a command, a step result, a heartbeat, a fired timer) yields the events
to append, the step commands to send and the timers to schedule. Events are applied as they are
emitted, so each rule sees the state its predecessors left. Stale and duplicated messages (an
old attempt's result, a timer for a step that already moved on) yield nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tasksaga.core import attempts
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.context import SagaContext
from tasksaga.core.definition import Placement, Stage, StepDef, TaskDefinition
from tasksaga.core.state import StepStatus, TaskState, TaskStatus, evolve

RandomFraction = Callable[[], float]

STEP_TIMED_OUT = "StepTimedOut"
HEARTBEAT_MISSED = "HeartbeatMissed"
COMPENSATION_TIMED_OUT = "CompensationTimedOut"
CANCELLED = attempts.CANCELLED
SUPERSEDED = attempts.SUPERSEDED

_UNFINISHED = (StepStatus.PENDING, StepStatus.RUNNING, StepStatus.RETRY_SCHEDULED)


@dataclass
class Decision:
    state: TaskState
    events: list[ev.TaskEvent] = field(default_factory=list)
    commands: list[msg.StepCommand] = field(default_factory=list)
    timers: list[msg.ScheduleTimer] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not (self.events or self.commands or self.timers)


class _Rules:
    def __init__(
        self, definition: TaskDefinition, state: TaskState, now_ms: int, random: RandomFraction
    ) -> None:
        self.definition = definition
        self.now = now_ms
        self.random = random
        self.decision = Decision(state=state)

    @property
    def state(self) -> TaskState:
        return self.decision.state

    def emit(self, event: ev.TaskEvent) -> None:
        self.decision.events.append(event)
        self.decision.state = evolve(self.decision.state, event)

    def send(self, command: msg.StepCommand) -> None:
        self.decision.commands.append(command)

    def schedule(self, fire_at_ms: int, kind: msg.TimerKind, step: str, attempt: int) -> None:
        timer = msg.TimerFired(task_id=self.state.task_id, kind=kind, step=step, attempt=attempt)
        self.decision.timers.append(msg.ScheduleTimer(fire_at_ms=fire_at_ms, timer=timer))

    # -- inbound messages ----------------------------------------------------------------------

    def submit(self, command: msg.SubmitTask) -> None:
        if self.state.status is not TaskStatus.NEW:
            return  # the same submission delivered twice
        timeout = self.definition.timeout_seconds
        deadline = self.now + int(timeout * 1000) if timeout else None
        self.emit(ev.TaskSubmitted(
            task_id=command.task_id, task_type=command.task_type,
            request_json=command.request_json, callback_url=command.callback_url,
            idempotency_key=command.idempotency_key, submitted_at_ms=command.submitted_at_ms,
            deadline_ms=deadline, tenant=command.tenant, submitted_by=command.submitted_by,
        ))
        if deadline is not None:
            self.schedule(deadline, msg.TimerKind.TASK_TIMEOUT, "", 0)
        done_on_api = {r.step: r.data_json for r in command.api_steps}
        for step in self.definition.api_steps():
            if step.name in done_on_api:
                self.emit(ev.StepCompleted(step.name, 1, done_on_api[step.name], self.now))
            else:
                self.fail_step(step.name, 1, "MissingApiStep",
                               f"API step {step.name!r} was not done at submission", False)

    def cancel(self, reason: str) -> None:
        if self.state.status is not TaskStatus.RUNNING or not self.definition.cancellable:
            return
        self.emit(ev.CancellationRequested(reason, self.now))
        self.start_compensation(reason)

    def retry_compensation(self) -> None:
        if self.state.status is not TaskStatus.COMPENSATION_FAILED:
            return
        self.emit(ev.CompensationRetryRequested(self.now))
        for step in self.state.steps_in(StepStatus.COMPENSATION_FAILED):
            self.dispatch_compensation(self.definition.get_step(step.name),
                                       step.compensation_attempt + 1)

    def step_succeeded(self, result: msg.StepSucceeded) -> None:
        """Every success is an effect: it becomes the step's data, or a surplus effect that is
        compensated on its own. None is dropped while its effect stands."""
        if not self.definition.has_step(result.step):
            return
        step = self.state.step(result.step)
        if step.attempt == 0:
            return  # never dispatched by this task: no attempt of ours did this
        if attempts.completes_step(self.state, step, result):
            if step.status is StepStatus.RUNNING and not attempts.holds_lease(step, result):
                # A late success of an earlier attempt completes the step: the attempt running
                # now is no longer needed; should it succeed too, its effect is surplus.
                self.request_step_cancellation(
                    result.step, f"attempt {result.attempt} already completed the step")
            self.emit(ev.StepCompleted(result.step, result.attempt, result.data_json, self.now))
        elif not attempts.already_recorded(step, result):
            self.record_surplus(result)

    def record_surplus(self, result: msg.StepSucceeded) -> None:
        step = self.definition.get_step(result.step)
        self.emit(ev.StepSurplusSucceeded(result.step, result.attempt, result.data_json,
                                          step.has_compensation, self.now))
        if step.has_compensation:
            self.send(attempts.surplus_compensation(self.state, self.definition, step,
                                                    result.attempt))

    def step_failed(self, result: msg.StepAttemptFailed) -> None:
        if not attempts.holds_lease(self.state.step(result.step), result):
            return  # an older attempt, or a stale lease: the current holder decides
        self.fail_step(result.step, result.attempt, result.error_type, result.error_message,
                       result.retryable, result.trace_id, result.error_lineage)

    def heartbeat(self, beat: msg.StepHeartbeat) -> None:
        if not attempts.holds_lease(self.state.step(beat.step), beat):
            return
        timeout = self.definition.get_step(beat.step).heartbeat_timeout_seconds
        if timeout:
            self.schedule(self.now + int(timeout * 1000), msg.TimerKind.HEARTBEAT_TIMEOUT,
                          beat.step, beat.attempt)

    def compensation_succeeded(self, result: msg.CompensationSucceeded) -> None:
        step = self.state.step(result.step)
        if result.surplus_attempt:
            undone = attempts.surplus_compensated(self.state, result, self.now)
            if undone is not None:
                self.emit(undone)
            return
        if step.status is StepStatus.COMPENSATING and step.compensation_attempt == result.attempt:
            self.emit(ev.StepCompensated(result.step, result.attempt, self.now))

    def compensation_failed(self, result: msg.CompensationAttemptFailed) -> None:
        step = self.state.step(result.step)
        if result.surplus_attempt:
            failed = attempts.surplus_compensation_failed(self.state, self.definition, result,
                                                          self.now)
            if failed is not None:
                self.emit(failed)
                if failed.will_retry:
                    self.send(attempts.surplus_compensation(
                        self.state, self.definition, self.definition.get_step(result.step),
                        result.surplus_attempt))
            return
        if step.status is StepStatus.COMPENSATING and step.compensation_attempt == result.attempt:
            self.fail_compensation(result.step, result.attempt, result.error_type,
                                   result.error_message, result.trace_id, result.error_lineage)

    def timer_fired(self, timer: msg.TimerFired) -> None:
        step = self.state.step(timer.step)
        kind = timer.kind
        running_attempt = step.status is StepStatus.RUNNING and step.attempt == timer.attempt
        if kind is msg.TimerKind.TASK_TIMEOUT:
            self.cancel(f"task timed out after {self.definition.timeout_seconds:g} s")
        elif kind is msg.TimerKind.STEP_RETRY:
            if (self.state.status is TaskStatus.RUNNING
                    and step.status is StepStatus.RETRY_SCHEDULED
                    and timer.attempt == step.attempt + 1):
                self.dispatch(self.definition.get_step(timer.step), timer.attempt)
        elif kind is msg.TimerKind.STEP_TIMEOUT and running_attempt:
            timeout_ms = self.definition.step_timeout_ms(self.definition.get_step(step.name))
            self.fail_step(step.name, step.attempt, STEP_TIMED_OUT,
                           f"no result within {timeout_ms / 1000:g} s", True)
        elif kind is msg.TimerKind.HEARTBEAT_TIMEOUT and running_attempt:
            timeout_s = self.definition.get_step(step.name).heartbeat_timeout_seconds
            self.fail_step(step.name, step.attempt, HEARTBEAT_MISSED,
                           f"no heartbeat for {timeout_s:g} s: the worker died or hung", True)
        elif kind is msg.TimerKind.COMPENSATION_RETRY:
            if (step.status is StepStatus.COMPENSATION_RETRY_SCHEDULED
                    and timer.attempt == step.compensation_attempt + 1):
                self.dispatch_compensation(self.definition.get_step(timer.step), timer.attempt)
        elif kind is msg.TimerKind.COMPENSATION_TIMEOUT and (
            step.status is StepStatus.COMPENSATING and step.compensation_attempt == timer.attempt
        ):
            self.fail_compensation(step.name, timer.attempt, COMPENSATION_TIMED_OUT,
                                   "no compensation result in time", None)

    # -- rules ---------------------------------------------------------------------------------

    def fail_step(
        self, name: str, attempt: int, error_type: str, message: str, retryable: bool,
        trace_id: str | None = None, lineage: list[str] | None = None,
    ) -> None:
        step = self.definition.get_step(name)
        policy = self.definition.retry_policy_of(step)
        stage = self.definition.stage_of(name)
        wanted = self.state.status is TaskStatus.RUNNING and not self.satisfied(stage)
        will_retry = (wanted and retryable
                      and policy.allows_retry(attempt, error_type, lineage or ()))
        self.emit(ev.StepFailed(name, attempt, error_type, message, will_retry, self.now,
                                trace_id))
        if will_retry:
            fire_at = self.now + policy.delay_before(attempt + 1, self.random())
            self.emit(ev.StepRetryScheduled(name, attempt + 1, fire_at))
            self.schedule(fire_at, msg.TimerKind.STEP_RETRY, name, attempt + 1)
        elif wanted and not self.satisfiable(stage):
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
        queue = self.definition.queue_of(step)
        timeout_at = self.now + self.definition.step_timeout_ms(step)
        # The lease's fencing token: the version StepDispatched takes, so every later dispatch
        # of the task holds a larger one.
        token = self.state.version + 1
        self.emit(ev.StepDispatched(step.name, attempt, queue, self.now, timeout_at, token))
        self.send(msg.ExecuteStep(
            task_id=self.state.task_id, task_type=self.state.task_type, step=step.name,
            attempt=attempt, queue=queue, request_json=self.state.request_json,
            step_data=attempts.data_read_by(self.state, step),
            idempotency_key=f"{self.state.task_id}:{step.name}:{attempt}",
            timeout_at_ms=timeout_at, fencing_token=token,
        ))
        # The heartbeat deadline is armed by the worker's first heartbeat, sent when it
        # starts the step: time spent waiting in the queue is the step timeout's business.
        self.schedule(timeout_at, msg.TimerKind.STEP_TIMEOUT, step.name, attempt)

    def dispatch_compensation(self, step: StepDef, attempt: int) -> None:
        self.emit(ev.StepCompensationDispatched(step.name, attempt, self.now))
        self.send(msg.CompensateStep(
            task_id=self.state.task_id, task_type=self.state.task_type, step=step.name,
            attempt=attempt, queue=self.definition.queue_of(step),
            request_json=self.state.request_json,
            step_data={**attempts.data_read_by(self.state, step), **self.own_data(step)},
            idempotency_key=f"{self.state.task_id}:{step.name}:compensate:{attempt}",
        ))
        timeout_at = self.now + self.definition.step_timeout_ms(step)
        self.schedule(timeout_at, msg.TimerKind.COMPENSATION_TIMEOUT, step.name, attempt)

    def own_data(self, step: StepDef) -> dict[str, str]:
        data = self.state.step(step.name).data_json
        return {} if data is None else {step.name: data}

    # -- stages --------------------------------------------------------------------------------

    def _count(self, stage: Stage, *statuses: StepStatus) -> int:
        return sum(1 for s in stage.steps if self.state.step(s.name).status in statuses)

    def satisfied(self, stage: Stage) -> bool:
        required = stage.required_successes(self._count(stage, StepStatus.SKIPPED))
        launched = self._count(stage, StepStatus.PENDING) == 0
        return launched and self._count(stage, StepStatus.COMPLETED) >= required

    def satisfiable(self, stage: Stage) -> bool:
        required = stage.required_successes(self._count(stage, StepStatus.SKIPPED))
        possible = self._count(stage, StepStatus.COMPLETED, *_UNFINISHED)
        return possible >= required

    def release_stragglers(self, stage: Stage) -> None:
        """A satisfied any/quorum group no longer needs its other members."""
        for member in stage.steps:
            step = self.state.step(member.name)
            if step.status is StepStatus.RUNNING:
                self.request_step_cancellation(member.name, f"group {stage.group} satisfied")
            elif step.status is StepStatus.RETRY_SCHEDULED:
                self.emit(ev.StepFailed(member.name, step.attempt, SUPERSEDED,
                                        f"group {stage.group} satisfied", False, self.now))

    # -- moving on -----------------------------------------------------------------------------

    def advance(self) -> None:
        """Move the saga forward as far as the state allows."""
        if self.state.status is TaskStatus.RUNNING:
            self.advance_forward()
        if self.state.status is TaskStatus.COMPENSATING:
            self.advance_compensation()

    def advance_forward(self) -> None:
        for stage in self.definition.stages():
            if not self.satisfied(stage):
                for step in stage.steps:
                    if self.state.status is not TaskStatus.RUNNING:
                        return
                    if (step.placement is Placement.WORKER
                            and self.state.step(step.name).status is StepStatus.PENDING):
                        self.launch(step)
                if self.state.status is not TaskStatus.RUNNING or not self.satisfied(stage):
                    return  # wait for this stage before the next one
            self.release_stragglers(stage)
        if not self.state.steps_in(StepStatus.RUNNING):  # stragglers answer first
            self.complete()

    def launch(self, step: StepDef) -> None:
        if step.condition is not None and step.condition.function is not None:
            try:
                context = self.saga_context()
                result = bool(step.condition.function(context))
                summary = step.condition.summary(context) if step.condition.summary else ""
            except Exception as error:  # user code: a broken condition fails its step
                self.fail_step(step.name, 1, "ConditionError", _describe(error), False)
                return
            self.emit(ev.ConditionEvaluated(
                step.name, step.condition.description, step.condition.function_name,
                result, summary, self.now,
            ))
            if not result:
                reason = f"condition {step.condition.description!r} was false"
                self.emit(ev.StepSkipped(step.name, reason, self.now))
                return
        self.dispatch(step, 1)

    def complete(self) -> None:
        builder = self.definition.build_response
        try:
            response_json = builder(self.saga_context()).model_dump_json() if builder else "{}"
        except Exception as error:  # user code: a broken response builder fails the task
            self.start_compensation(f"response builder failed: {_describe(error)}")
            return
        self.emit(ev.TaskCompleted(response_json, self.now))

    def advance_compensation(self) -> None:
        busy = self.state.steps_in(
            StepStatus.RUNNING, StepStatus.COMPENSATING, StepStatus.COMPENSATION_RETRY_SCHEDULED,
            StepStatus.COMPENSATION_FAILED,
        )
        if busy:
            return
        for name in reversed(self.state.completion_order):
            step = self.definition.get_step(name)
            if self.state.step(name).status is StepStatus.COMPLETED and step.has_compensation:
                self.dispatch_compensation(step, 1)
                return
        reason = self.state.end_reason or ""
        if self.state.ending == "cancelled":
            self.emit(ev.TaskCancelled(reason, self.now))
        else:
            self.emit(ev.TaskFailed(reason, self.now))

    def saga_context(self) -> SagaContext[Any]:
        request = self.definition.request_type.model_validate_json(self.state.request_json)
        return SagaContext(task_id=self.state.task_id, definition=self.definition,
                           request=request, step_data_json=self.state.step_data())


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def decide(
    definition: TaskDefinition,
    state: TaskState,
    message: msg.Inbound,
    now_ms: int,
    random: RandomFraction,
) -> Decision:
    rules = _Rules(definition, state, now_ms, random)
    if state.status is TaskStatus.NEW and not isinstance(message, msg.SubmitTask):
        return rules.decision  # nothing to act on before the task exists
    match message:
        case msg.SubmitTask():
            rules.submit(message)
        case msg.CancelTask():
            rules.cancel(message.reason)
        case msg.RetryCompensation():
            rules.retry_compensation()
        case msg.StepSucceeded():
            rules.step_succeeded(message)
        case msg.StepAttemptFailed():
            rules.step_failed(message)
        case msg.StepHeartbeat():
            rules.heartbeat(message)
        case msg.CompensationSucceeded():
            rules.compensation_succeeded(message)
        case msg.CompensationAttemptFailed():
            rules.compensation_failed(message)
        case msg.TimerFired():
            rules.timer_fired(message)
    if rules.decision.events:
        rules.advance()
    return rules.decision
