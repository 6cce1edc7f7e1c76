"""The orchestrator's side of workflows: the live body of each task it owns, kept between
messages, so a decision feeds one message's events instead of replaying the whole history.

A cached driver is used only when it has run through exactly the stream's version; it is
taken out of the cache while a transaction uses it and put back only once that transaction
committed (a rolled-back decision leaves it behind: the next message replays). A cache miss
(another owner wrote, a restart, eviction) replays the stream: the same events, in the same
order, through the same body.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tasksaga.core import messages as msg
from tasksaga.core.decision import Decision, RandomFraction
from tasksaga.core.envelope import Envelope
from tasksaga.core.state import TaskState, TaskStatus
from tasksaga.workflow.decide import decide_workflow
from tasksaga.workflow.definition import WorkflowDefinition
from tasksaga.workflow.driver import WorkflowDriver
from tasksaga.workflow.replay import replay

DEFAULT_MAX_DRIVERS = 10_000


@dataclass
class RuntimeCounters:
    hits: int = 0
    replays: int = 0
    replayed_events: int = 0


class WorkflowRuntime:
    def __init__(self, max_drivers: int = DEFAULT_MAX_DRIVERS, cache: bool = True) -> None:
        if max_drivers <= 0:
            raise ValueError(f"max_drivers must be positive, got {max_drivers}")
        self._max = max_drivers
        self._enabled = cache
        self._drivers: OrderedDict[str, tuple[int, WorkflowDriver]] = OrderedDict()
        self.counters = RuntimeCounters()

    def decide(
        self, definition: WorkflowDefinition, state: TaskState, message: msg.Inbound,
        now_ms: int, random: RandomFraction, history: Callable[[], Sequence[Envelope]],
        in_flight: dict[str, tuple[int, WorkflowDriver | None]],
    ) -> Decision:
        """Decide ``message``; the driver after it goes to ``in_flight`` (the transaction's),
        for ``keep`` once it committed."""
        driver = self._driver_for(definition, state, random, history, in_flight)
        decision, after = decide_workflow(definition, state, driver, message, now_ms, random)
        in_flight[state.task_id or decision.state.task_id] = (decision.state.version, after)
        return decision

    def keep(self, committed: dict[str, tuple[int, WorkflowDriver | None]]) -> None:
        if not self._enabled:
            return
        for task_id, (version, driver) in committed.items():
            self._drivers.pop(task_id, None)
            if driver is None or driver.outcome is not None:
                continue  # finished or suspended: nothing to resume from memory
            self._drivers[task_id] = (version, driver)
        while len(self._drivers) > self._max:
            self._drivers.popitem(last=False)

    def evict(self, task_ids: Sequence[str]) -> None:
        for task_id in task_ids:
            self._drivers.pop(task_id, None)

    def clear(self) -> None:
        self._drivers.clear()

    def __len__(self) -> int:
        return len(self._drivers)

    def _driver_for(
        self, definition: WorkflowDefinition, state: TaskState, random: RandomFraction,
        history: Callable[[], Sequence[Envelope]],
        in_flight: dict[str, tuple[int, WorkflowDriver | None]],
    ) -> WorkflowDriver | None:
        if state.status is TaskStatus.NEW:
            return None
        entry = in_flight.pop(state.task_id, None) or self._drivers.pop(state.task_id, None)
        if entry is not None and entry[0] == state.version and entry[1] is not None:
            self.counters.hits += 1
            return entry[1]
        envelopes = list(history())
        self.counters.replays += 1
        self.counters.replayed_events += len(envelopes)
        return replay(definition, [e.payload for e in envelopes],
                      [e.occurred_at_ms for e in envelopes], random)


def is_workflow(definition: object) -> bool:
    return isinstance(definition, WorkflowDefinition)
