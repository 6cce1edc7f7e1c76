"""The task page's timeline, folded from a task's events (api/ui/timeline.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tasksaga.api.ui.timeline import LaneSpec, TimelineEvent, build_timeline, lane_specs
from tasksaga.core import AwaitMode, StepContext, TaskDefinition


class Empty(BaseModel):
    pass


LANES = [LaneSpec("Prepare", 1, compensable=True),
         LaneSpec("Encode", 2, "Render", parallel=True, compensable=True),
         LaneSpec("Thumbnail", 2, "Render", parallel=True, compensable=True)]


def events(*rows: tuple[str, str | None, int | None, int]) -> list[TimelineEvent]:
    return [TimelineEvent(version, kind, step, attempt, at)
            for version, (kind, step, attempt, at) in enumerate(rows, start=1)]


def lane(timeline: dict[str, Any], step: str) -> dict[str, Any]:
    found: dict[str, Any] = next(x for x in timeline["lanes"] if x["step"] == step)
    return found


def bars(timeline: dict[str, Any], step: str) -> list[tuple[str, int, int, int | None, str]]:
    return [(b["kind"], b["attempt"], b["start_ms"], b["end_ms"], b["outcome"])
            for b in lane(timeline, step)["bars"]]


def test_a_dispatched_step_is_an_open_bar_until_its_completion_closes_it() -> None:
    running = events(("TaskSubmitted", None, None, 1000), ("StepDispatched", "Prepare", 1, 1100))
    timeline = build_timeline(LANES, running, now_ms=5000)
    assert bars(timeline, "Prepare") == [("run", 1, 1100, None, "running")]
    assert (timeline["start_ms"], timeline["end_ms"], timeline["now_ms"]) == (1000, None, 5000)

    completed = [*running, TimelineEvent(3, "StepCompleted", "Prepare", 1, 2600)]
    assert bars(build_timeline(LANES, completed, 5000), "Prepare") == [
        ("run", 1, 1100, 2600, "completed")]


def test_each_attempt_is_a_bar_and_a_retry_is_marked() -> None:
    timeline = build_timeline(LANES, events(
        ("StepDispatched", "Thumbnail", 1, 100), ("StepFailed", "Thumbnail", 1, 400),
        ("StepRetryScheduled", "Thumbnail", None, 400), ("StepDispatched", "Thumbnail", 2, 700),
        ("StepCompleted", "Thumbnail", 2, 900)), now_ms=1000)
    assert bars(timeline, "Thumbnail") == [("run", 1, 100, 400, "failed"),
                                           ("run", 2, 700, 900, "completed")]
    assert [m["kind"] for m in lane(timeline, "Thumbnail")["marks"]] == ["retry"]


def test_compensations_are_bars_of_their_own_and_their_order_is_reported() -> None:
    timeline = build_timeline(LANES, events(
        ("StepDispatched", "Prepare", 1, 0), ("StepCompleted", "Prepare", 1, 10),
        ("StepDispatched", "Thumbnail", 1, 10), ("StepCompleted", "Thumbnail", 1, 20),
        ("StepDispatched", "Encode", 1, 10), ("StepFailed", "Encode", 1, 30),
        ("CompensationStarted", None, None, 30),
        ("StepCompensationDispatched", "Thumbnail", 1, 31),
        ("StepCompensated", "Thumbnail", 1, 40),
        ("StepCompensationDispatched", "Prepare", 1, 41),
        ("StepCompensationFailed", "Prepare", 1, 45),
        ("StepCompensationDispatched", "Prepare", 2, 50),
        ("StepCompensated", "Prepare", 2, 55), ("TaskFailed", None, None, 56)), now_ms=99)
    assert bars(timeline, "Prepare") == [("run", 1, 0, 10, "completed"),
                                         ("compensation", 1, 41, 45, "failed"),
                                         ("compensation", 2, 50, 55, "compensated")]
    assert bars(timeline, "Thumbnail")[-1] == ("compensation", 1, 31, 40, "compensated")
    assert timeline["compensation_order"] == ["Thumbnail", "Prepare"]
    assert timeline["end_ms"] == 56


def test_the_terminal_event_stops_open_bars_and_an_operator_retry_reopens_the_task() -> None:
    cancelled = events(("StepDispatched", "Encode", 1, 100), ("TaskCancelled", None, None, 300))
    timeline = build_timeline(LANES, cancelled, now_ms=1000)
    assert bars(timeline, "Encode") == [("run", 1, 100, 300, "stopped")]
    assert timeline["end_ms"] == 300

    retried = [*cancelled, TimelineEvent(3, "CompensationRetryRequested", None, None, 500)]
    assert build_timeline(LANES, retried, now_ms=1000)["end_ms"] is None


def test_an_attempt_that_fails_after_being_told_to_stop_is_cancelled_not_failed() -> None:
    timeline = build_timeline(LANES, events(
        ("StepDispatched", "Encode", 1, 100), ("CancellationRequested", None, None, 200),
        ("StepCancellationRequested", "Encode", 1, 200), ("StepFailed", "Encode", 1, 260)),
        now_ms=300)
    assert bars(timeline, "Encode") == [("run", 1, 100, 260, "cancelled")]
    assert [m["kind"] for m in lane(timeline, "Encode")["marks"]] == ["cancel"]


def test_a_wait_for_step_is_a_wait_bar_with_its_signal_marked() -> None:
    spec = [LaneSpec("Approve", 1, signal=True)]
    timeline = build_timeline(spec, events(
        ("StepWaiting", "Approve", 1, 100), ("SignalReceived", "Approve", None, 700),
        ("StepCompleted", "Approve", 1, 710)), now_ms=1000)
    assert bars(timeline, "Approve") == [("wait", 1, 100, 710, "completed")]
    assert [m["kind"] for m in lane(timeline, "Approve")["marks"]] == ["signal"]
    assert lane(timeline, "Approve")["signal"] is True


def test_events_are_folded_in_version_order_whatever_order_they_come_in() -> None:
    rows = events(("StepDispatched", "Prepare", 1, 100), ("StepCompleted", "Prepare", 1, 200))
    assert (build_timeline(LANES, list(reversed(rows)), 300)
            == build_timeline(LANES, rows, 300))


def test_a_step_ended_without_a_recorded_start_is_an_instant_bar() -> None:
    timeline = build_timeline(LANES, events(("StepCompleted", "Prepare", 1, 150)), 300)
    assert bars(timeline, "Prepare") == [("run", 1, 150, 150, "completed")]


def test_lanes_follow_the_definition_and_mark_its_parallel_group() -> None:
    definition = TaskDefinition("Lanes", queue="q", request=Empty)
    definition.group("Render", order=2, mode=AwaitMode.ALL)

    def handler(ctx: StepContext[Empty]) -> None:
        return None

    definition.step("Prepare", order=1)(handler)
    definition.step("Encode", order=2, group="Render")(handler)
    definition.step("Thumbnail", order=2, group="Render")(handler)
    definition.wait_for("Approve", order=3)
    specs = lane_specs(definition, seen_steps={"Prepare", "RenamedLater"})
    assert [(s.step, s.order, s.group, s.parallel, s.signal) for s in specs] == [
        ("Prepare", 1, None, False, False), ("Encode", 2, "Render", True, False),
        ("Thumbnail", 2, "Render", True, False), ("Approve", 3, None, False, True),
        ("RenamedLater", 4, None, False, False)]


def test_an_event_of_the_live_stream_reads_as_a_timeline_event() -> None:
    message = {"type": "event", "version": 4, "event_type": "StepCompleted", "step": "Encode",
               "attempt": 2, "occurred_at_ms": 1234, "summary": "step Encode completed"}
    assert TimelineEvent.from_message(message) == TimelineEvent(
        4, "StepCompleted", "Encode", 2, 1234, "step Encode completed")


KINDS = ["StepDispatched", "StepCompleted", "StepFailed", "StepWaiting", "StepRetryScheduled",
         "StepCompensationDispatched", "StepCompensated", "StepCompensationFailed",
         "SignalReceived", "StepSkipped", "CompensationRetryRequested"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KINDS), st.sampled_from(["Prepare", "Encode"]),
                          st.integers(1, 3), st.integers(0, 50)), max_size=30),
       st.sampled_from(["TaskCompleted", "TaskFailed", "TaskCancelled"]))
def test_any_history_gives_ordered_bars_at_most_one_open_and_none_after_the_end(
        rows: list[tuple[str, str, int, int]], terminal: str) -> None:
    at = 0
    history = []
    for version, (kind, step, attempt, gap) in enumerate(rows, start=1):
        at += gap
        history.append(TimelineEvent(version, kind, step, attempt, at))
    running = build_timeline(LANES, history, now_ms=at + 1)
    for lane_document in running["lanes"]:
        assert sum(b["end_ms"] is None for b in lane_document["bars"]) <= 1
        for b in lane_document["bars"]:
            assert b["end_ms"] is None or b["end_ms"] >= b["start_ms"]
    ended = build_timeline(
        LANES, [*history, TimelineEvent(len(history) + 1, terminal, None, None, at + 5)],
        now_ms=at + 9)
    assert ended["end_ms"] == at + 5
    assert all(b["end_ms"] is not None and b["end_ms"] <= at + 5
               for x in ended["lanes"] for b in x["bars"])
