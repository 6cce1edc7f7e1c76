"""The rules of the steps the orchestrator completes itself: wait_for (a signal) and sleep
(a durable timer). Pure: time comes in as ``now``; the sleep's ``until`` runs here, in decide.

A wait_for step completes with the data of its signal, whether the signal came before the
step was reached (it was kept) or while the step waited. A repeated signal id records nothing.
A wait that times out fails its step without retry: the task's failure path (compensation
before the pivot, an operator after it). A sleep wakes at its time; a restart changes nothing,
its timer is durable like every other.
"""

from __future__ import annotations

from typing import Any

from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.context import SagaContext
from tasksaga.core.state import StepStatus, TaskStatus
from tasksaga.core.step_actions import CANCELLED, StepActions
from tasksaga.core.steps import Placement, Sleep, StepDef

SIGNAL_TIMED_OUT = "SignalTimedOut"
SLEEP_UNTIL_ERROR = "SleepUntilError"
WAITING_FOR_SIGNAL = "signal"
WAITING_FOR_TIME = "time"
_WAIT_TIMERS = (msg.TimerKind.WAIT_TIMEOUT, msg.TimerKind.SLEEP_WAKE)


def wake_time(sleep: Sleep, context: SagaContext[Any], now_ms: int) -> int:
    """When a sleep reached at ``now_ms`` ends, in epoch milliseconds."""
    if sleep.until is None:
        return now_ms + round((sleep.seconds or 0.0) * 1000)
    until = sleep.until(context)
    if isinstance(until, bool) or not (isinstance(until, int) or (
            hasattr(until, "timestamp") and hasattr(until, "tzinfo"))):
        raise TypeError(f"until must return epoch milliseconds (int) or a datetime, got "
                        f"{type(until).__name__}")
    if isinstance(until, int):
        return until
    if until.tzinfo is None:
        raise ValueError(f"until returned a naive datetime ({until.isoformat()}); return a "
                         "timezone-aware one (datetime.now(UTC) + ...) or epoch ms")
    # Never a moment early: the next whole millisecond (rounding woke a sleep up to 0.5 ms
    # before its time). A datetime is whole microseconds, which the float holds to ~0.2 µs:
    # round to them, then take the ceiling in integers (a float's ceiling would move an exact
    # millisecond to the next one).
    microseconds = round(until.timestamp() * 1_000_000)
    return -(-microseconds // 1000)


class WaitActions(StepActions):
    """Starting, completing and timing out the steps no worker runs."""

    def saga_context(self) -> SagaContext[Any]:
        request = self.definition.request_type.model_validate_json(self.state.request_json)
        return SagaContext(task_id=self.state.task_id, definition=self.definition,
                           request=request, step_data_json=self.state.step_data())

    def start_compensation(self, reason: str) -> None:
        super().start_compensation(reason)
        self.stop_waiting("not waited for: the task is compensating", CANCELLED)

    def start(self, step: StepDef, attempt: int) -> None:
        """Dispatch a worker step; begin waiting for a wait_for or sleep step."""
        if step.placement is not Placement.ORCHESTRATOR:
            self.dispatch(step, attempt)
        elif step.sleep is not None:
            self.begin_sleep(step, step.sleep, attempt)
        else:
            self.begin_signal_wait(step, attempt)

    def begin_signal_wait(self, step: StepDef, attempt: int) -> None:
        timeout = step.signal.timeout_seconds if step.signal else None
        until = self.now + round(timeout * 1000) if timeout else None
        self.emit(ev.StepWaiting(step.name, attempt, WAITING_FOR_SIGNAL, until, self.now))
        early = self.state.pending_signal(step.name)
        if early is not None:  # it came before the step was reached: it completes it now
            self.emit(ev.StepCompleted(step.name, attempt, early.data_json, self.now))
        elif until is not None:
            self.schedule(until, msg.TimerKind.WAIT_TIMEOUT, step.name, attempt)

    def begin_sleep(self, step: StepDef, sleep: Sleep, attempt: int) -> None:
        try:
            until = wake_time(sleep, self.saga_context(), self.now)
        except Exception as error:  # user code: a broken until fails its step
            self.fail_step(step.name, attempt, SLEEP_UNTIL_ERROR,
                           f"{type(error).__name__}: {error}", False)
            return
        self.emit(ev.StepWaiting(step.name, attempt, WAITING_FOR_TIME, until, self.now))
        if until <= self.now:  # a time already past: nothing to wait for
            self.emit(ev.StepCompleted(step.name, attempt, "{}", self.now))
        else:
            self.schedule(until, msg.TimerKind.SLEEP_WAKE, step.name, attempt)

    def signal(self, command: msg.SendSignal) -> None:
        """Record the signal if its step still waits for one, or is not reached yet and kept
        no signal; complete the step if it waits now. Anything else (a repeated id included:
        the step took a signal already) records nothing."""
        if not self.definition.has_step(command.signal):
            return
        if self.definition.get_step(command.signal).signal is None:
            return
        if self.state.status is not TaskStatus.RUNNING:
            return
        step = self.state.step(command.signal)
        early = step.status is StepStatus.PENDING
        if not early and step.status is not StepStatus.WAITING:
            return  # done, failed or skipped: too late
        if early and self.state.pending_signal(command.signal) is not None:
            return  # the first early signal is the one the step will take
        self.emit(ev.SignalReceived(command.signal, command.signal_id, command.data_json,
                                    self.now, command.sent_by))
        if not early:
            self.emit(ev.StepCompleted(command.signal, step.attempt, command.data_json,
                                       self.now))

    def wait_timer_fired(self, timer: msg.TimerFired) -> bool:
        """Handle a wait or sleep timer; False when ``timer`` is of another kind. A timer of
        a step that no longer waits (cancelled, signalled, retried) does nothing."""
        if timer.kind not in _WAIT_TIMERS:
            return False
        step = self.state.step(timer.step)
        if (self.state.status is not TaskStatus.RUNNING or step.status is not StepStatus.WAITING
                or step.attempt != timer.attempt):
            return True
        if timer.kind is msg.TimerKind.SLEEP_WAKE:
            self.emit(ev.StepCompleted(timer.step, timer.attempt, "{}", self.now))
        else:
            timeout = self.definition.get_step(timer.step).signal
            seconds = timeout.timeout_seconds if timeout else 0
            self.fail_step(timer.step, timer.attempt, SIGNAL_TIMED_OUT,
                           f"signal {timer.step!r} did not arrive within {seconds:g} s", False)
        return True

    def stop_waiting(self, reason: str, error_type: str) -> None:
        """The task no longer needs its waiting steps (compensation, or their group is
        satisfied): they fail, and their timers, should they fire, do nothing."""
        for step in self.state.steps_in(StepStatus.WAITING):
            self.emit(ev.StepFailed(step.name, step.attempt, error_type, reason, False,
                                    self.now))
