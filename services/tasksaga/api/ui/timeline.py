"""The task page's timeline: a task's events folded into bars over time. Pure.

Each step is a lane; each attempt of the step is a bar from its dispatch (or its wait) to the
event that ended it, and each compensation attempt is a bar of its own on the same lane, so
compensation reads right to left down the lanes: last step undone first. Steps that share an
order (a parallel group) carry the same ``order`` and ``group`` and are drawn side by side.
A bar still open has ``end_ms`` None; the page stretches it to the current time. An attempt
that fails after a cancellation told it to stop ends ``cancelled``, not ``failed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tasksaga.core.definition import TaskDefinition

RUN = "run"
WAIT = "wait"
COMPENSATION = "compensation"

# How an event ends the open bar of its step (RUN or WAIT, else COMPENSATION).
_ENDS_RUN = {"StepCompleted": "completed", "StepFailed": "failed"}
_ENDS_COMPENSATION = {"StepCompensated": "compensated", "StepCompensationFailed": "failed"}
_TERMINAL = {"TaskCompleted", "TaskFailed", "TaskCancelled", "TaskCompensationFailed",
             "TaskNeedsAttention"}
# An operator's retry: the task goes on after its terminal event.
_REOPENS = {"CompensationRetryRequested", "ForwardRetryRequested"}
# Events drawn as a mark on their step's lane, with the mark's kind.
_MARKS = {"StepRetryScheduled": "retry", "StepSkipped": "skipped",
          "ConditionEvaluated": "condition", "StepCancellationRequested": "cancel",
          "SignalReceived": "signal", "StepCompensationRetryScheduled": "retry"}


@dataclass(frozen=True)
class TimelineEvent:
    version: int
    event_type: str
    step: str | None
    attempt: int | None
    at_ms: int
    summary: str = ""

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> TimelineEvent:
        """From a live stream's event message (api/live/messages.py)."""
        return cls(int(data["version"]), str(data["event_type"]), data.get("step"),
                   data.get("attempt"), int(data["occurred_at_ms"]), str(data.get("summary", "")))


@dataclass(frozen=True)
class LaneSpec:
    step: str
    order: int
    group: str | None = None
    parallel: bool = False  # another step shares its order
    signal: bool = False  # a wait_for step: it takes the signal of its own name
    compensable: bool = False


@dataclass
class _Bar:
    kind: str
    attempt: int
    start_ms: int
    end_ms: int | None = None
    outcome: str = "running"

    def document(self) -> dict[str, Any]:
        return {"kind": self.kind, "attempt": self.attempt, "start_ms": self.start_ms,
                "end_ms": self.end_ms, "outcome": self.outcome}


@dataclass
class _Lane:
    spec: LaneSpec
    bars: list[_Bar] = field(default_factory=list)
    marks: list[dict[str, Any]] = field(default_factory=list)
    told_to_stop: int | None = None  # the attempt a cancellation told to stop

    def open_bar(self) -> _Bar | None:
        return next((b for b in reversed(self.bars) if b.end_ms is None), None)

    def start(self, kind: str, attempt: int, at_ms: int) -> None:
        current = self.open_bar()
        if current is not None and current.kind == kind and current.attempt == attempt:
            return  # a wait already open for this attempt (StepWaiting after dispatch)
        if current is not None:
            self.close(current, at_ms, "superseded")
        self.bars.append(_Bar(kind, attempt, at_ms))

    @staticmethod
    def close(bar: _Bar, at_ms: int, outcome: str) -> None:
        bar.end_ms, bar.outcome = max(at_ms, bar.start_ms), outcome

    def end(self, kinds: tuple[str, ...], attempt: int, at_ms: int, outcome: str) -> None:
        current = self.open_bar()
        if current is not None and current.kind in kinds:
            self.close(current, at_ms, outcome)
        else:  # ended without a recorded start (an API step): an instant bar
            kind = COMPENSATION if COMPENSATION in kinds else RUN
            self.bars.append(_Bar(kind, attempt, at_ms, at_ms, outcome))


def lane_specs(definition: TaskDefinition | None, seen_steps: Iterable[str] = ()) -> list[LaneSpec]:
    """The lanes of a task type, in its order; steps only the events name come last."""
    specs: list[LaneSpec] = []
    if definition is not None:
        orders = [s.order for s in definition.steps]
        specs = [LaneSpec(s.name, s.order, s.group, orders.count(s.order) > 1,
                          s.signal is not None, s.has_compensation)
                 for s in definition.steps]
    known = {s.step for s in specs}
    last = max((s.order for s in specs), default=0)
    for name in sorted(set(seen_steps) - known):
        last += 1
        specs.append(LaneSpec(name, last))
    return specs


def _apply(lane: _Lane, event: TimelineEvent, undone: list[str]) -> None:
    attempt = event.attempt or 1
    kind = event.event_type
    if kind == "StepDispatched":
        lane.start(RUN, attempt, event.at_ms)
    elif kind == "StepWaiting":
        lane.start(WAIT, attempt, event.at_ms)
    elif kind == "StepCompensationDispatched":
        lane.start(COMPENSATION, attempt, event.at_ms)
        if lane.spec.step not in undone:
            undone.append(lane.spec.step)
    elif kind in _ENDS_COMPENSATION:
        lane.end((COMPENSATION,), attempt, event.at_ms, _ENDS_COMPENSATION[kind])
    elif kind == "StepCancellationRequested":
        lane.told_to_stop = attempt
    elif kind in _ENDS_RUN:
        # A failure of an attempt told to stop is its cancellation, not a fault.
        stopped = kind == "StepFailed" and lane.told_to_stop == attempt
        lane.end((RUN, WAIT), attempt, event.at_ms, "cancelled" if stopped else _ENDS_RUN[kind])
    if kind in _MARKS:
        lane.marks.append({"kind": _MARKS[kind], "at_ms": event.at_ms, "label": event.summary})


def build_timeline(specs: Sequence[LaneSpec], events: Iterable[TimelineEvent],
                   now_ms: int) -> dict[str, Any]:
    """Lanes of bars and marks, the time span, and the order in which steps were undone."""
    lanes = {spec.step: _Lane(spec) for spec in specs}
    started: int | None = None
    ended: int | None = None
    undone: list[str] = []
    for event in sorted(events, key=lambda e: e.version):
        started = event.at_ms if started is None else started
        if event.event_type in _TERMINAL:
            ended = event.at_ms
            for lane in lanes.values():
                bar = lane.open_bar()
                if bar is not None:  # its end event never came: the task stopped it
                    lane.close(bar, event.at_ms, "stopped")
        elif event.event_type in _REOPENS:
            ended = None
        elif event.step is not None and event.step in lanes:
            _apply(lanes[event.step], event, undone)
    return {
        "start_ms": started,
        "end_ms": ended,
        "now_ms": now_ms,
        "lanes": [{"step": lane.spec.step, "order": lane.spec.order, "group": lane.spec.group,
                   "parallel": lane.spec.parallel, "signal": lane.spec.signal,
                   "compensable": lane.spec.compensable,
                   "bars": [b.document() for b in lane.bars], "marks": lane.marks}
                  for lane in lanes.values()],
        "compensation_order": undone,
    }
