"""What a test asserts on, for one task of a run: its status, the attempts it made, the order
it compensated in and its audit trail, each read from the task's events in the store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel

from tasksaga.core import events as ev
from tasksaga.core.audit import describe
from tasksaga.core.envelope import Envelope
from tasksaga.core.fan_out_audit import summarised
from tasksaga.core.state import StepStatus, TaskState, TaskStatus, evolve
from tasksaga.testing.memory_store import InMemoryEventStore, Progress

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class Attempt:
    step: str
    attempt: int
    outcome: str  # "completed", "failed" (with the error type), or "running"
    error_type: str | None = None


class TaskRun:
    """A view of one task's events; it reads the store each time, so it follows the run."""

    def __init__(self, store: InMemoryEventStore, task_id: str) -> None:
        self.task_id = task_id
        self._store = store

    @property
    def envelopes(self) -> list[Envelope]:
        return self._store.events(self.task_id)

    @property
    def events(self) -> list[ev.TaskEvent]:
        return [e.payload for e in self.envelopes]

    @property
    def state(self) -> TaskState:
        state = TaskState()
        for event in self.events:
            state = evolve(state, event)
        return state

    @property
    def status(self) -> TaskStatus:
        return self.state.status

    def step_status(self, step: str) -> StepStatus:
        return self.state.step(step).status

    @property
    def steps_completed(self) -> list[str]:
        """The steps that completed, in the order they did (compensation undoes it backwards)."""
        return list(self.state.completion_order)

    @property
    def dispatched(self) -> list[tuple[str, int]]:
        """Every (step, attempt) sent to a worker, in order: retries show as later attempts."""
        return [(e.step, e.attempt) for e in self.events if isinstance(e, ev.StepDispatched)]

    @property
    def attempts(self) -> list[Attempt]:
        outcomes: dict[tuple[str, int], Attempt] = {}
        for event in self.events:
            if isinstance(event, ev.StepDispatched):
                outcomes[(event.step, event.attempt)] = Attempt(event.step, event.attempt,
                                                                "running")
            elif isinstance(event, ev.StepCompleted) and event.attempt:
                outcomes[(event.step, event.attempt)] = Attempt(event.step, event.attempt,
                                                                "completed")
            elif isinstance(event, ev.StepFailed):
                outcomes[(event.step, event.attempt)] = Attempt(
                    event.step, event.attempt, "failed", event.error_type)
        return list(outcomes.values())

    @property
    def compensation_order(self) -> list[str]:
        """The steps whose compensation succeeded, in the order they did."""
        return [e.step for e in self.events if isinstance(e, ev.StepCompensated)]

    @property
    def skipped(self) -> list[str]:
        return [e.step for e in self.events if isinstance(e, ev.StepSkipped)]

    def audit(self) -> list[str]:
        """The audit trail's lines, rendered by the same function as the service's audit."""
        lines, state = [], TaskState()
        for envelope in self.envelopes:
            if not summarised(envelope.payload):  # as the projector does
                lines.append(describe(envelope.payload, state, envelope.occurred_at_ms))
            state = evolve(state, envelope.payload)
        return lines

    def data(self, step: str, model: type[ModelT]) -> ModelT:
        """The data the step completed with."""
        raw = self.state.step(step).data_json
        if raw is None:
            raise AssertionError(f"step {step!r} has no data (it is "
                                 f"{self.step_status(step)}){self._trail()}")
        return model.model_validate_json(raw)

    def response(self, model: type[ModelT]) -> ModelT:
        raw = self.state.response_json
        if raw is None:
            raise AssertionError(f"task {self.task_id} has no response: it is "
                                 f"{self.status}{self._trail()}")
        return model.model_validate_json(raw)

    def progress(self, step: str) -> Progress | None:
        """The step's last reported progress (its heartbeats), as the status API shows it."""
        return self._store.progress(self.task_id, step)

    # -- assertions that print the audit trail when they fail ----------------------------------

    def assert_status(self, expected: TaskStatus) -> None:
        if self.status is not expected:
            raise AssertionError(f"task {self.task_id} is {self.status}, expected "
                                 f"{expected}{self._trail()}")

    def assert_completed(self) -> None:
        self.assert_status(TaskStatus.COMPLETED)

    def assert_steps_completed(self, expected: Sequence[str]) -> None:
        if self.steps_completed != list(expected):
            raise AssertionError(f"steps completed {self.steps_completed}, expected "
                                 f"{list(expected)}{self._trail()}")

    def assert_compensated(self, expected: Sequence[str]) -> None:
        """Exactly these steps were compensated, in this order."""
        if self.compensation_order != list(expected):
            raise AssertionError(f"steps compensated {self.compensation_order}, expected "
                                 f"{list(expected)}{self._trail()}")

    def assert_audit_contains(self, *fragments: str) -> None:
        """Each fragment is in some audit line, in this order."""
        lines = self.audit()
        position = 0
        for fragment in fragments:
            found = next((i for i in range(position, len(lines)) if fragment in lines[i]), None)
            if found is None:
                raise AssertionError(f"no audit line after line {position} contains "
                                     f"{fragment!r}{self._trail()}")
            position = found + 1

    def _trail(self) -> str:
        return "\naudit trail:\n" + "\n".join(f"  {line}" for line in self.audit())
