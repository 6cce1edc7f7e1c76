"""Task definitions and a decide() driver for unit tests (no servers, a fake clock)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from tasksaga.core import RetryPolicy, SagaContext, StepCondition, StepContext, TaskDefinition
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.decide import Decision, decide
from tasksaga.core.definition import AwaitMode
from tasksaga.core.state import TaskState, evolve


class Req(BaseModel):
    width: int = 1920


class Data(BaseModel):
    value: str = ""


def _noop(ctx: StepContext[Any]) -> Data:
    return Data(value=ctx.step)


def _undo(ctx: StepContext[Any], data: Any) -> None:
    return None


def linear(steps: int = 3, retry: RetryPolicy | None = None, cancellable: bool = True,
           timeout_seconds: float | None = None) -> TaskDefinition:
    task = TaskDefinition("Linear", queue="q", request=Req, cancellable=cancellable,
                          timeout_seconds=timeout_seconds, step_timeout_seconds=30)
    for index in range(1, steps + 1):
        task.step(f"S{index}", order=index, data=Data, retry=retry)(_noop)
        task.compensation(f"S{index}")(_undo)
    return task


def is_4k(ctx: SagaContext[Req]) -> bool:
    return ctx.request.width >= 3840


def grouped() -> TaskDefinition:
    """A, then B1/B2/B3 in parallel (B3 conditional), then C."""
    task = TaskDefinition("Grouped", queue="q", request=Req, step_timeout_seconds=30)
    task.step("A", order=1, data=Data)(_noop)
    task.step("B1", order=2, data=Data)(_noop)
    task.step("B2", order=2, data=Data)(_noop)
    task.step("B3", order=2, data=Data,
              condition=StepCondition("Source >= 4K", is_4k,
                                      lambda c: f"Width={c.request.width}"))(_noop)
    task.step("C", order=3, data=Data)(_noop)
    for name in ("A", "B1", "B2", "B3", "C"):
        task.compensation(name)(_undo)
    return task


def any_group(mode: AwaitMode = AwaitMode.ANY, quorum: int | None = None) -> TaskDefinition:
    """A, then a group of M1/M2/M3 awaiting any (or a quorum), then C."""
    task = TaskDefinition("Raced", queue="q", request=Req, step_timeout_seconds=30)
    task.step("A", order=1, data=Data)(_noop)
    task.group("Race", order=2, mode=mode, quorum=quorum)
    for name in ("M1", "M2", "M3"):
        task.step(name, order=2, group="Race", data=Data)(_noop)
    task.step("C", order=3, data=Data)(_noop)
    for name in ("A", "M1", "M2", "M3", "C"):
        task.compensation(name)(_undo)
    return task


@dataclass
class Driver:
    """Feeds messages to decide() and keeps the folded state, like the orchestrator does."""

    definition: TaskDefinition
    now: int = 1_000_000
    random_value: float = 0.0
    state: TaskState = field(default_factory=TaskState)
    events: list[ev.TaskEvent] = field(default_factory=list)
    commands: list[msg.Outbound] = field(default_factory=list)
    timers: list[msg.ScheduleTimer] = field(default_factory=list)
    chains: bool = False  # first dispatches carry chains, as the orchestrator's by default

    def send(self, message: msg.Inbound) -> Decision:
        decision = decide(self.definition, self.state, message, self.now,
                          lambda: self.random_value, self.chains)
        for event in decision.events:
            self.state = evolve(self.state, event)
        assert self.state == decision.state
        self.events += decision.events
        self.commands += decision.commands
        for scheduled in decision.timers:  # like the timers table: one row per timer identity
            self.timers = [t for t in self.timers if t.timer != scheduled.timer] + [scheduled]
        self.timers = [t for t in self.timers if t.timer not in decision.unscheduled]
        return decision

    def submit(self, width: int = 1920, task_id: str = "t1") -> Decision:
        return self.send(msg.SubmitTask(task_id, self.definition.name,
                                        Req(width=width).model_dump_json(), None, None, self.now))

    def start(self, step: str) -> Decision:
        """The worker's start report for the step's running attempt."""
        record = self.state.step(step)
        return self.send(msg.StepHeartbeat(self.state.task_id, step, record.attempt, None, None,
                                           record.fencing_token, started=True))

    def succeed(self, step: str, attempt: int | None = None) -> Decision:
        attempt = attempt or self.state.step(step).attempt
        return self.send(msg.StepSucceeded(self.state.task_id, step, attempt,
                                           Data(value=step).model_dump_json()))

    def fail(self, step: str, retryable: bool = True, error: str = "Boom",
             trace_id: str | None = None) -> Decision:
        return self.send(msg.StepAttemptFailed(self.state.task_id, step,
                                               self.state.step(step).attempt, error, "bad",
                                               retryable, trace_id))

    def cancels(self) -> list[str]:
        return [c.step for c in self.commands if isinstance(c, msg.CancelStep)]

    def compensated(self, step: str) -> Decision:
        return self.send(msg.CompensationSucceeded(
            self.state.task_id, step, self.state.step(step).compensation_attempt))

    def fire_due(self) -> list[Decision]:
        due = [t for t in self.timers if t.fire_at_ms <= self.now]
        self.timers = [t for t in self.timers if t.fire_at_ms > self.now]
        return [self.send(t.timer) for t in sorted(due, key=lambda t: t.fire_at_ms)]

    def advance(self, ms: int) -> list[Decision]:
        self.now += ms
        return self.fire_due()

    def dispatched(self) -> list[str]:
        return [c.step for c in self.commands if isinstance(c, msg.ExecuteStep)]

    def compensations(self) -> list[str]:
        return [c.step for c in self.commands if isinstance(c, msg.CompensateStep)]

    def running(self) -> list[str]:
        from tasksaga.core.state import StepStatus
        return sorted(s.name for s in self.state.steps_in(StepStatus.RUNNING))

    def compensating(self) -> list[str]:
        from tasksaga.core.state import StepStatus
        return sorted(s.name for s in self.state.steps_in(StepStatus.COMPENSATING))
