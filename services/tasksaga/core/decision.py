"""What one decision yields, and the recorder the saga rules write it with as they go (pure).

A decision is the events to append, the step commands to send and the timers to schedule for
one inbound message. Each event is applied to the state as soon as it is emitted, so every
later rule of the same decision sees the state its predecessors left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.state import TaskState, evolve

#: A random fraction in [0, 1) for retry jitter: passed in, so the rules stay deterministic.
RandomFraction = Callable[[], float]


@dataclass
class Decision:
    state: TaskState
    events: list[ev.TaskEvent] = field(default_factory=list)
    commands: list[msg.Outbound] = field(default_factory=list)
    timers: list[msg.ScheduleTimer] = field(default_factory=list)
    # Timers no longer needed (the deadlines of an attempt that ended, of a task that ended):
    # deleted with the decision's events instead of firing later for nothing, each costing a
    # transaction and a load of the task's state (a fan-out has as many as it has items).
    unscheduled: list[msg.TimerFired] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not (self.events or self.commands or self.timers or self.unscheduled)


class DecisionRecorder:
    """Builds one decision: the definition, "now" and the jitter source the rules decide with,
    and the decision so far."""

    def __init__(
        self, definition: TaskDefinition, state: TaskState, now_ms: int, random: RandomFraction,
        chains: bool = False,
    ) -> None:
        self.definition = definition
        self.now = now_ms
        self.random = random
        # Whether first dispatches carry chains (tasksaga.core.chains): the orchestrator's
        # setting, off where every transition should pass through it (tests of the rules).
        self.chains = chains
        self.decision = Decision(state=state)

    @property
    def state(self) -> TaskState:
        return self.decision.state

    def emit(self, event: ev.TaskEvent) -> None:
        self.decision.events.append(event)
        self.decision.state = evolve(self.decision.state, event)
        self._unschedule_deadlines_ended_by(event)

    def _unschedule_deadlines_ended_by(self, event: ev.TaskEvent) -> None:
        match event:
            case ev.StepCompleted() | ev.StepFailed():
                self.unschedule(msg.TimerKind.STEP_TIMEOUT, event.step, event.attempt)
                if (self.definition.has_step(event.step)
                        and self.definition.get_step(event.step).heartbeat_timeout_seconds):
                    self.unschedule(msg.TimerKind.HEARTBEAT_TIMEOUT, event.step, event.attempt)
            case ev.StepCompensated() | ev.StepCompensationFailed():
                self.unschedule(msg.TimerKind.COMPENSATION_TIMEOUT, event.step, event.attempt)
            case ev.TaskCompleted() | ev.TaskFailed() | ev.TaskCancelled() | ev.TaskResolved():
                if self.definition.timeout_seconds:
                    self.unschedule(msg.TimerKind.TASK_TIMEOUT, "", 0)

    def send(self, command: msg.Outbound) -> None:
        self.decision.commands.append(command)

    def unschedule(self, kind: msg.TimerKind, step: str, attempt: int) -> None:
        self.decision.unscheduled.append(
            msg.TimerFired(task_id=self.state.task_id, kind=kind, step=step, attempt=attempt))

    def schedule(self, fire_at_ms: int, kind: msg.TimerKind, step: str, attempt: int) -> None:
        timer = msg.TimerFired(task_id=self.state.task_id, kind=kind, step=step, attempt=attempt)
        self.decision.timers.append(msg.ScheduleTimer(fire_at_ms=fire_at_ms, timer=timer))
