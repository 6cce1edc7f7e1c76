"""decide(definition, state, message, now, random) -> Decision: the saga's rules, pure.

Every inbound message (a command, a step result, a heartbeat, a fired timer) yields the events
to append, the step commands to send and the timers to schedule. Events are applied as they are
emitted, so each rule sees the state its predecessors left. Stale and duplicated messages (an
old attempt's result, a timer for a step that already moved on) yield nothing.
"""

from __future__ import annotations

from tasksaga.core import attempts
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.children import ChildActions
from tasksaga.core.decision import Decision, RandomFraction
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.fan_out import FanOutActions
from tasksaga.core.fingerprint import fingerprint
from tasksaga.core.pivot import passed_pivot, stuck_forward
from tasksaga.core.repair import RepairActions
from tasksaga.core.stage_progress import satisfied
from tasksaga.core.state import StepStatus, TaskState, TaskStatus
from tasksaga.core.steps import Placement, Stage, StepDef

STEP_TIMED_OUT = "StepTimedOut"
HEARTBEAT_MISSED = "HeartbeatMissed"
COMPENSATION_TIMED_OUT = "CompensationTimedOut"
SUPERSEDED = attempts.SUPERSEDED

# Decision and RandomFraction are defined in tasksaga.core.decision and re-exported here,
# where the orchestrator, the tests and the benchmarks import them.
__all__ = [
    "COMPENSATION_TIMED_OUT",
    "HEARTBEAT_MISSED",
    "STEP_TIMED_OUT",
    "Decision",
    "RandomFraction",
    "decide",
]


class _Rules(FanOutActions, RepairActions, ChildActions):
    """The rule for each inbound message, then moving the saga on as far as it can go."""

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
            definition_version=self.definition.version,
            definition_fingerprint=fingerprint(self.definition),
            parent_task_id=command.parent_task_id, parent_step=command.parent_step,
        ))
        if deadline is not None:
            self.schedule(deadline, msg.TimerKind.TASK_TIMEOUT, "", 0)
        done_on_api = {r.step: r for r in command.api_steps}
        for step in self.definition.api_steps():
            if step.name in done_on_api:
                done = done_on_api[step.name]
                self.emit(ev.StepCompleted(step.name, 1, done.data_json, self.now,
                                           artifacts=dict(done.artifacts)))
            else:
                self.fail_step(step.name, 1, "MissingApiStep",
                               f"API step {step.name!r} was not done at submission", False)

    def cancel(self, reason: str) -> None:
        if self.state.status is not TaskStatus.RUNNING or not self.definition.cancellable:
            return
        pivot = passed_pivot(self.definition, self.state)
        if pivot is not None:  # past the point of no return: only forward
            self.emit(ev.CancellationRefused(reason, pivot, self.now))
            return
        self.emit(ev.CancellationRequested(reason, self.now))
        self.start_compensation(reason)

    def retry_forward(self) -> None:
        """Dispatch again the failed members of the stage the task stopped at, each with a
        fresh retry budget (the fold moves each failed step's ``retry_base``)."""
        if self.state.status is not TaskStatus.NEEDS_ATTENTION:
            return
        self.emit(ev.ForwardRetryRequested(self.now))
        stage = next((s for s in self.definition.stages() if not satisfied(self.state, s)),
                     None)
        for member in stage.steps if stage else ():
            step = self.state.step(member.name)
            if step.status is StepStatus.FAILED:
                self.start(member, step.attempt + 1)

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
        if step.attempt == 0 and not (step.chain_reserved and result.attempt == 1):
            return  # never dispatched by this task: no attempt of ours did this
        if attempts.completes_step(self.state, step, result):
            if step.status is StepStatus.RUNNING and not attempts.holds_lease(step, result):
                # A late success of an earlier attempt completes the step: the attempt running
                # now is no longer needed; should it succeed too, its effect is surplus.
                self.request_step_cancellation(
                    result.step, f"attempt {result.attempt} already completed the step")
            self.emit(ev.StepCompleted(result.step, result.attempt, result.data_json, self.now,
                                        dict(result.artifacts)))
            if result.started_next:
                self.chained_start(result)
        elif not attempts.already_recorded(step, result):
            self.record_surplus(result)

    def chained_start(self, result: msg.StepSucceeded) -> None:
        """The worker of a chain started the next step right after this success: record its
        dispatch (no command), as if sent now; in a task that stopped going forward it is a
        running step like any other, asked to stop and compensated once it answers. A chain
        whose step is no longer the next (the step moved on without it) only runs an earlier
        attempt, decided on its result (tasksaga.core.chains)."""
        name = result.started_next
        if not self.definition.has_step(name):
            return
        nxt = self.state.step(name)
        if not nxt.chain_reserved or nxt.status is not StepStatus.PENDING or nxt.attempt:
            return
        step = self.definition.get_step(name)
        timeout_at = self.now + self.definition.dispatch_timeout_ms(step)
        self.emit(ev.StepDispatched(name, 1, self.definition.queue_of(step), self.now,
                                    timeout_at, result.fencing_token,
                                    chained_after=result.step))
        self.schedule(timeout_at, msg.TimerKind.STEP_TIMEOUT, name, 1)
        if self.state.status is not TaskStatus.RUNNING:
            self.request_step_cancellation(name, self.state.end_reason or "the task stopped")

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
        step = self.definition.get_step(beat.step)
        if beat.started:  # the step timeout counts from now (a redelivered run restarts it)
            self.schedule(self.now + self.definition.step_timeout_ms(step),
                          msg.TimerKind.STEP_TIMEOUT, beat.step, beat.attempt)
        timeout = step.heartbeat_timeout_seconds
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
        if self.wait_timer_fired(timer):
            return
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
                           f"no result within {timeout_ms / 1000:g} s of its start (or no "
                           f"worker started it within {self.definition.start_timeout_seconds:g}"
                           " s of its dispatch)", True)
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

    # -- moving on -----------------------------------------------------------------------------

    def release_stragglers(self, stage: Stage) -> None:
        """A satisfied any/quorum group no longer needs its other members."""
        for member in stage.steps:
            step = self.state.step(member.name)
            if step.status is StepStatus.RUNNING:
                self.request_step_cancellation(member.name, f"group {stage.group} satisfied")
            elif step.status in (StepStatus.RETRY_SCHEDULED, StepStatus.WAITING):
                self.emit(ev.StepFailed(member.name, step.attempt, SUPERSEDED,
                                        f"group {stage.group} satisfied", False, self.now))

    def advance(self) -> None:
        """Move the saga forward as far as the state allows."""
        if self.state.status is TaskStatus.RUNNING:
            self.advance_forward()
        if self.state.status is TaskStatus.COMPENSATING:
            self.advance_compensation()

    def advance_forward(self) -> None:
        for stage in self.definition.stages():
            if not satisfied(self.state, stage):
                for step in stage.steps:
                    if self.state.status is not TaskStatus.RUNNING:
                        return
                    if (step.placement is not Placement.API
                            and self.state.step(step.name).status is StepStatus.PENDING):
                        self.launch(step)
                    elif step.for_each is not None:
                        self.advance_fan_out(step)
                if (self.state.status is not TaskStatus.RUNNING
                        or not satisfied(self.state, stage)):
                    self.stop_past_pivot(stage)
                    return  # wait for this stage before the next one
            self.release_stragglers(stage)
        if not self.state.any_in(StepStatus.RUNNING):  # stragglers answer first
            self.complete()

    def stop_past_pivot(self, stage: Stage) -> None:
        """Past the pivot, a stage that can no longer succeed, once nothing in it runs, leaves
        the task to an operator: forward recovery is exhausted, nothing is compensated."""
        pivot = passed_pivot(self.definition, self.state)
        failed = stuck_forward(self.state, stage) if pivot else None
        if pivot is None or failed is None or self.state.status is not TaskStatus.RUNNING:
            return
        self.emit(ev.TaskNeedsAttention(failed.name, pivot, failed.error_type or "",
                                        failed.error_message or "", self.now, failed.trace_id))

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
        self.start(step, 1)

    def complete(self) -> None:
        builder = self.definition.build_response
        try:
            response_json = builder(self.saga_context()).model_dump_json() if builder else "{}"
        except Exception as error:  # user code: a broken response builder fails the task
            pivot = passed_pivot(self.definition, self.state)
            if pivot is not None:
                self.emit(ev.TaskNeedsAttention("", pivot, type(error).__name__, str(error),
                                                self.now))
            else:
                self.start_compensation(f"response builder failed: {_describe(error)}")
            return
        self.emit(ev.TaskCompleted(response_json, self.now))

    def advance_compensation(self) -> None:
        busy = self.state.any_in(
            StepStatus.RUNNING, StepStatus.COMPENSATING, StepStatus.COMPENSATION_RETRY_SCHEDULED,
            StepStatus.COMPENSATION_FAILED,
        )
        if busy:
            return
        pivot = passed_pivot(self.definition, self.state)
        if pivot is not None:
            # The pivot's running attempt succeeded while the task drained for a cancellation
            # (nothing is compensated before running steps answer): it passed the point of no
            # return after all, so the cancellation is refused and the task goes on.
            self.emit(ev.CancellationRefused(self.state.end_reason or "", pivot, self.now))
            self.advance_forward()
            return
        if self.compensate_open_fan_outs():
            return
        for name in reversed(self.state.completion_order):
            if name in self.state.fan_outs:  # its instances, in reverse item order
                if self.compensate_instances(name):
                    return
                continue
            step = self.definition.get_step(name)
            if self.state.step(name).status is StepStatus.COMPLETED and step.has_compensation:
                self.dispatch_compensation(step, 1)
                return
        reason = self.state.end_reason or ""
        if self.state.ending == "cancelled":
            self.emit(ev.TaskCancelled(reason, self.now))
        else:
            self.emit(ev.TaskFailed(reason, self.now))


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def decide(
    definition: TaskDefinition,
    state: TaskState,
    message: msg.Inbound,
    now_ms: int,
    random: RandomFraction,
    chains: bool = False,
) -> Decision:
    """``chains``: first dispatches may carry chains (tasksaga.core.chains)."""
    rules = _Rules(definition, state, now_ms, random, chains)
    if state.status is TaskStatus.NEW and not isinstance(message, msg.SubmitTask):
        return rules.decision  # nothing to act on before the task exists
    match message:
        case msg.SubmitTask():
            rules.submit(message)
        case msg.CancelTask():
            rules.cancel(message.reason)
        case msg.RetryCompensation():
            rules.retry_compensation()
        case msg.RetryForward():
            rules.retry_forward()
        case msg.SendSignal():
            rules.signal(message)
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
        case msg.SkipCompensation():
            rules.skip_compensation(message)
        case msg.ResolveTask():
            rules.resolve(message)
        case msg.RedriveTask():
            rules.redrive(message)
        case msg.ChildTaskFinished():
            rules.child_finished(message)
        case msg.CompensateTask():
            rules.compensate_task(message)
    if rules.decision.events:
        rules.advance()
        rules.report_end_to_parent()
    return rules.decision
