"""decide for a workflow: the step lifecycle rules plus the body's driver, pure.

The rules for one inbound message record what happened to a step (completed, failed and
retried, timed out, signalled, woken) with the saga's own events; then every event of the
decision is fed, in order, to the driver, and the commands the body issues become events,
step commands and timers. A replay feeds the same events in the same order, so it sees the
body take the same path (``tasksaga.workflow.driver``).
"""

from __future__ import annotations

from tasksaga.core import attempts
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.decision import Decision, RandomFraction
from tasksaga.core.fingerprint import fingerprint
from tasksaga.core.state import StepStatus, TaskState, TaskStatus
from tasksaga.workflow.children import WorkflowChildRules
from tasksaga.workflow.commands import (
    Cancelled,
    Command,
    Completed,
    Divergence,
    Failed,
    Kind,
    Outcome,
)
from tasksaga.workflow.definition import WorkflowDefinition
from tasksaga.workflow.driver import SIGNAL_TIMED_OUT, WorkflowDriver

STEP_TIMED_OUT = "StepTimedOut"
HEARTBEAT_MISSED = "HeartbeatMissed"
_IN_FLIGHT = (StepStatus.RUNNING, StepStatus.RETRY_SCHEDULED, StepStatus.WAITING)


class _WorkflowRules(WorkflowChildRules):
    def __init__(self, definition: WorkflowDefinition, state: TaskState, now_ms: int,
                 random: RandomFraction, driver: WorkflowDriver | None) -> None:
        super().__init__(definition, state, now_ms, random)
        self.workflow = definition
        self.driver = driver
        self._fed = 0

    @property
    def live(self) -> bool:
        """The driver follows this task and the body still runs."""
        return (self.driver is not None and self.driver.outcome is None
                and self.state.status is TaskStatus.RUNNING)

    # -- inbound messages ----------------------------------------------------------------------

    def submit(self, command: msg.SubmitTask) -> None:
        if self.state.status is not TaskStatus.NEW:
            return
        timeout = self.workflow.timeout_seconds
        deadline = self.now + int(timeout * 1000) if timeout else None
        self.driver = WorkflowDriver(self.workflow, [])
        self.emit(ev.TaskSubmitted(
            task_id=command.task_id, task_type=command.task_type,
            request_json=command.request_json, callback_url=command.callback_url,
            idempotency_key=command.idempotency_key, submitted_at_ms=command.submitted_at_ms,
            deadline_ms=deadline, tenant=command.tenant, submitted_by=command.submitted_by,
            definition_version=self.workflow.version,
            definition_fingerprint=fingerprint(self.workflow),
            parent_task_id=command.parent_task_id, parent_step=command.parent_step))
        if deadline is not None:
            self.schedule(deadline, msg.TimerKind.TASK_TIMEOUT, "", 0)

    def step_succeeded(self, result: msg.StepSucceeded) -> None:
        step = self.state.step(result.step)
        if step.attempt == 0 or self.state.status.is_terminal:
            return
        if attempts.completes_step(self.state, step, result) and not step.cancel_requested:
            self.emit(ev.StepCompleted(result.step, result.attempt, result.data_json, self.now))
        elif not attempts.already_recorded(step, result):
            # The body no longer waits for it (cancelled, superseded): the effect is kept
            # on record; compensating it is the body's business.
            self.emit(ev.StepSurplusSucceeded(result.step, result.attempt, result.data_json,
                                              False, self.now))

    def step_failed(self, result: msg.StepAttemptFailed) -> None:
        if attempts.holds_lease(self.state.step(result.step), result):
            self.fail_step(result.step, result.attempt, result.error_type,
                           result.error_message, result.retryable, result.trace_id,
                           result.error_lineage)

    def timer_fired(self, timer: msg.TimerFired) -> None:
        step = self.state.step(timer.step)
        running = step.status is StepStatus.RUNNING and step.attempt == timer.attempt
        waiting = (self.state.status is TaskStatus.RUNNING and step.status is StepStatus.WAITING
                   and step.attempt == timer.attempt)
        kind = timer.kind
        if kind is msg.TimerKind.TASK_TIMEOUT:
            self.cancel(f"task timed out after {self.workflow.timeout_seconds:g} s")
        elif kind is msg.TimerKind.STEP_RETRY:
            command = self.driver.command(timer.step) if self.driver else None
            if (self.live and command is not None and step.status is StepStatus.RETRY_SCHEDULED
                    and timer.attempt == step.attempt + 1):
                self.dispatch(command, timer.attempt)
        elif kind is msg.TimerKind.STEP_TIMEOUT and running:
            self.fail_step(step.name, step.attempt, STEP_TIMED_OUT,
                           "no result within the step's timeout", True)
        elif kind is msg.TimerKind.HEARTBEAT_TIMEOUT and running:
            self.fail_step(step.name, step.attempt, HEARTBEAT_MISSED,
                           "no heartbeat in time: the worker died or hung", True)
        elif kind is msg.TimerKind.SLEEP_WAKE and waiting:
            self.emit(ev.StepCompleted(timer.step, timer.attempt, "{}", self.now))
        elif kind is msg.TimerKind.WAIT_TIMEOUT and waiting:
            self.emit(ev.StepFailed(timer.step, timer.attempt, SIGNAL_TIMED_OUT,
                                    f"signal {timer.step!r} did not arrive in time", False,
                                    self.now))

    def signal(self, command: msg.SendSignal) -> None:
        if (command.signal not in self.workflow.signal_types
                or self.state.status is not TaskStatus.RUNNING):
            return
        step = self.state.step(command.signal)
        early = step.status is StepStatus.PENDING
        if not early and step.status is not StepStatus.WAITING:
            return
        if early and self.state.pending_signal(command.signal) is not None:
            return
        self.emit(ev.SignalReceived(command.signal, command.signal_id, command.data_json,
                                    self.now, command.sent_by))
        if not early:
            self.emit(ev.StepCompleted(command.signal, step.attempt, command.data_json,
                                       self.now))

    def cancel(self, reason: str) -> None:
        if (self.state.status is not TaskStatus.RUNNING or not self.workflow.cancellable
                or self.state.ending is not None):
            return
        self.emit(ev.CancellationRequested(reason, self.now))

    def retry_forward(self) -> None:
        """Resume a task suspended by non-determinism, with the code deployed now."""
        if self.state.status is not TaskStatus.NEEDS_ATTENTION or self.driver is None:
            return
        self.emit(ev.ForwardRetryRequested(self.now))
        self._fed = len(self.decision.events)  # the driver replayed the history already
        if self.driver.outcome is not None:
            self.finish(self.driver.outcome)
            return
        self.issue(self.driver.take_new())

    # -- running the body ------------------------------------------------------------------

    def run_body(self) -> None:
        """Feed this decision's events to the driver, in order, and act on what it issues."""
        # What ran before this message, for a cancellation it delivers (a scan of every
        # step: only when the message is a cancellation, not on every decision).
        in_flight = (sorted(s.name for s in self.state.steps_in(*_IN_FLIGHT))
                     if any(isinstance(e, ev.CancellationRequested)
                            for e in self.decision.events[self._fed:]) else [])
        while self._fed < len(self.decision.events):
            event = self.decision.events[self._fed]
            self._fed += 1
            if not self.live:
                continue
            assert self.driver is not None
            delivered_before = self.driver.cancelled
            self.driver.feed(event, self.now, self.random, self.state.task_id)
            self.issue(self.driver.take_new())
            self.stop(self.driver.take_abandoned(), "the workflow no longer waits for it")
            if self.driver.cancelled is not None and delivered_before is None:
                self.stop(in_flight, f"cancelled: {self.driver.cancelled}")
            if self.driver.outcome is not None:
                self.finish(self.driver.outcome)

    def issue(self, commands: list[Command]) -> None:
        for command in commands:
            if command.kind is Kind.STEP:
                self.dispatch(command, 1)
            elif command.kind is Kind.SLEEP:
                self.begin_sleep(command)
            elif command.kind is Kind.SIGNAL:
                self.begin_signal_wait(command)
            elif command.kind is Kind.CHILD:
                self.start_child(command)
            elif command.kind is Kind.COMPENSATE:
                self.compensate_child(command)
            else:
                self.emit(ev.WorkflowValueRecorded(command.name, command.record_kind,
                                                   command.value_json, self.now))

    def dispatch(self, command: Command, attempt: int) -> None:
        step = self.workflow.get_step(command.name)
        queue = self.workflow.queue_of(step)
        timeout_at = self.now + self.workflow.dispatch_timeout_ms(step)
        token = self.state.version + 1
        self.emit(ev.StepDispatched(command.name, attempt, queue, self.now, timeout_at, token))
        self.send(msg.ExecuteStep(
            task_id=self.state.task_id, task_type=self.state.task_type, step=command.name,
            attempt=attempt, queue=queue, request_json=self.state.request_json,
            step_data={command.name: command.argument_json},
            idempotency_key=f"{self.state.task_id}:{command.name}:{attempt}",
            timeout_at_ms=timeout_at, fencing_token=token,
            definition_version=self.workflow.version))
        self.schedule(timeout_at, msg.TimerKind.STEP_TIMEOUT, command.name, attempt)

    def begin_sleep(self, command: Command) -> None:
        until = self.now + command.duration_ms
        self.emit(ev.StepWaiting(command.name, 1, "time", until, self.now))
        if command.duration_ms <= 0:
            self.emit(ev.StepCompleted(command.name, 1, "{}", self.now))
        else:
            self.schedule(until, msg.TimerKind.SLEEP_WAKE, command.name, 1)

    def begin_signal_wait(self, command: Command) -> None:
        until = None if command.timeout_ms is None else self.now + command.timeout_ms
        self.emit(ev.StepWaiting(command.name, 1, "signal", until, self.now))
        early = self.state.pending_signal(command.name)
        if early is not None:
            self.emit(ev.StepCompleted(command.name, 1, early.data_json, self.now))
        elif until is not None:
            self.schedule(until, msg.TimerKind.WAIT_TIMEOUT, command.name, 1)

    def fail_step(self, name: str, attempt: int, error_type: str, message: str,
                  retryable: bool, trace_id: str | None = None,
                  lineage: list[str] | None = None) -> None:
        command = self.driver.command(name) if self.driver else None
        step = self.state.step(name)
        wanted = (self.live and command is not None and not step.cancel_requested
                  and self.driver is not None and name in self.driver.waits_on)
        policy = ((command.retry if command else None)
                  or (self.workflow.retry_policy_of(self.workflow.get_step(name))
                      if self.workflow.has_step(name) else self.workflow.default_retry))
        will_retry = wanted and retryable and policy.allows_retry(attempt, error_type,
                                                                  lineage or ())
        self.emit(ev.StepFailed(name, attempt, error_type, message, will_retry, self.now,
                                trace_id))
        if will_retry:
            fire_at = self.now + policy.delay_before(attempt + 1, self.random())
            self.emit(ev.StepRetryScheduled(name, attempt + 1, fire_at))
            self.schedule(fire_at, msg.TimerKind.STEP_RETRY, name, attempt + 1)

    def stop(self, names: list[str], reason: str) -> None:
        """The body no longer waits for these: running steps are told to stop, waits and
        scheduled retries end."""
        for name in names:
            if self.stop_child(name, reason):
                continue
            step = self.state.step(name)
            if step.status is StepStatus.RUNNING and not step.cancel_requested:
                self.emit(ev.StepCancellationRequested(name, step.attempt, reason, self.now))
                self.send(msg.CancelStep(
                    task_id=self.state.task_id, step=name, attempt=step.attempt,
                    queue=self._queue_of(name), reason=reason))
            elif step.status in (StepStatus.WAITING, StepStatus.RETRY_SCHEDULED):
                self.emit(ev.StepFailed(name, step.attempt, attempts.SUPERSEDED, reason, False,
                                        self.now))

    def _queue_of(self, name: str) -> str:
        """The step's queue; the workflow's for a step whose handler is no longer deployed
        (a CancelStep is a broadcast: the queue only labels it)."""
        if self.workflow.has_step(name):
            return self.workflow.queue_of(self.workflow.get_step(name))
        return self.workflow.queue

    def finish(self, outcome: Outcome) -> None:
        if isinstance(outcome, Divergence):
            if self.state.status is TaskStatus.RUNNING:
                self.emit(ev.WorkflowDiverged(outcome.index, outcome.location,
                                              outcome.expected, outcome.got, self.now))
            return
        self.stop(sorted(s.name for s in self.state.steps_in(*_IN_FLIGHT)),
                  "the workflow ended")
        if isinstance(outcome, Completed):
            self.emit(ev.TaskCompleted(outcome.response_json, self.now))
        elif isinstance(outcome, Cancelled):
            self.emit(ev.TaskCancelled(outcome.reason, self.now))
        elif isinstance(outcome, Failed):
            self.emit(ev.TaskFailed(outcome.reason, self.now))


def decide_workflow(
    definition: WorkflowDefinition, state: TaskState, driver: WorkflowDriver | None,
    message: msg.Inbound, now_ms: int, random: RandomFraction,
) -> tuple[Decision, WorkflowDriver | None]:
    """The decision for ``message``, and the driver after it. ``driver`` must have run the
    body through every event of ``state`` (``replay``); None for a task not submitted."""
    rules = _WorkflowRules(definition, state, now_ms, random, driver)
    if state.status is TaskStatus.NEW and not isinstance(message, msg.SubmitTask):
        return rules.decision, driver
    match message:
        case msg.SubmitTask():
            rules.submit(message)
        case msg.CancelTask():
            rules.cancel(message.reason)
        case msg.RetryForward():
            rules.retry_forward()
        case msg.SendSignal():
            rules.signal(message)
        case msg.StepSucceeded():
            rules.step_succeeded(message)
        case msg.StepAttemptFailed():
            rules.step_failed(message)
        case msg.TimerFired():
            rules.timer_fired(message)
        case msg.ChildTaskFinished():
            rules.child_finished(message)
        case msg.CompensateTask():
            rules.refuse_compensation(message)
    rules.run_body()
    if (rules.driver is not None and isinstance(rules.driver.outcome, Divergence)
            and rules.state.status is TaskStatus.RUNNING):
        rules.finish(rules.driver.outcome)  # found replaying the history before this message
    rules.report_end_to_parent()
    return rules.decision, rules.driver
