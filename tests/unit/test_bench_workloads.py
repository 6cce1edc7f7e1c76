"""The benchmark's workload shapes, dispatch latency, the run check and the profile summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest
from bench import checks, procstat, profile
from bench.workloads import WORKLOADS, dispatch_latencies, payload


def test_the_workloads_of_the_issue() -> None:
    assert WORKLOADS["linear3"].step_count == 3
    assert WORKLOADS["linear10"].step_count == 10
    parallel = WORKLOADS["parallel10"]
    assert [len(stage) for stage in parallel.stages] == [1, 10, 1]
    assert WORKLOADS["fail10"].fail_every == 10


def test_exactly_one_task_in_ten_fails() -> None:
    failing = WORKLOADS["fail10"]
    assert sum(failing.fails(i) for i in range(1000)) == 100
    assert not any(WORKLOADS["linear10"].fails(i) for i in range(1000))


def test_expected_events_of_a_completed_task() -> None:
    assert WORKLOADS["linear3"].expected_events(fail=False) == Counter(
        {"TaskSubmitted": 1, "StepDispatched": 3, "StepCompleted": 3, "TaskCompleted": 1})
    assert sum(WORKLOADS["parallel10"].expected_events(fail=False).values()) == 26


def test_expected_events_of_a_task_that_fails_at_its_last_step_and_compensates() -> None:
    events = WORKLOADS["fail10"].expected_events(fail=True)
    assert events["StepDispatched"] == 10
    assert events["StepCompleted"] == 9
    assert events["StepFailed"] == 1
    assert events["StepCompensationDispatched"] == events["StepCompensated"] == 9
    assert events["TaskFailed"] == 1
    assert "TaskCompleted" not in events
    assert sum(events.values()) == 4 * 10 + 1


def test_step_transitions_count_compensations() -> None:
    assert WORKLOADS["fail10"].step_executions(fail=False) == 10
    assert WORKLOADS["fail10"].step_executions(fail=True) == 19


def test_dispatch_latency_of_a_linear_task() -> None:
    stages = (("A",), ("B",), ("C",))
    times = {"A": [0.0, 1.0], "B": [1.002, 1.5], "C": [1.51, 2.0]}
    assert dispatch_latencies(stages, times) == pytest.approx([0.002, 0.01])


def test_dispatch_latency_after_a_parallel_stage_counts_from_its_last_end() -> None:
    stages = (("F",), ("P1", "P2"), ("J",))
    times = {"F": [0.0, 1.0], "P1": [1.001, 1.2], "P2": [1.003, 1.4], "J": [1.405, 1.5]}
    assert dispatch_latencies(stages, times) == pytest.approx([0.001, 0.003, 0.005])


def test_no_dispatch_latency_without_the_previous_stage() -> None:
    stages = (("A",), ("B",))
    assert dispatch_latencies(stages, {"B": [1.0, 2.0]}) == []


def test_payloads_are_about_300_bytes_and_differ_per_task() -> None:
    assert len(payload(1)) == 300
    assert payload(1) != payload(2)
    assert payload(1) == payload(1)


@dataclass(frozen=True)
class _Event:
    step: str | None = None
    attempt: int | None = None


class TaskSubmitted(_Event):
    pass


class StepDispatched(_Event):
    pass


class StepCompleted(_Event):
    pass


class TaskCompleted(_Event):
    pass


def _stream() -> list[_Event]:
    return [TaskSubmitted(), StepDispatched("A", 1), StepCompleted("A", 1), TaskCompleted()]


EXPECTED = {"TaskSubmitted": 1, "StepDispatched": 1, "StepCompleted": 1, "TaskCompleted": 1}


def test_a_sound_stream_has_no_problems() -> None:
    assert checks.stream_problems("t", [1, 2, 3, 4], _stream(), EXPECTED, "TaskCompleted") == []


def test_a_version_gap_is_a_problem() -> None:
    problems = checks.stream_problems("t", [1, 2, 4, 5], _stream(), EXPECTED, "TaskCompleted")
    assert any("versions" in p for p in problems)


def test_a_duplicated_transition_is_a_problem() -> None:
    events = [*_stream()[:3], StepCompleted("A", 1), TaskCompleted()]
    problems = checks.stream_problems("t", [1, 2, 3, 4, 5], events, EXPECTED, "TaskCompleted")
    assert any("duplicated" in p for p in problems)
    assert any("expected" in p for p in problems)


def test_a_wrong_or_missing_ending_is_a_problem() -> None:
    problems = checks.stream_problems("t", [1, 2, 3], _stream()[:3], EXPECTED, "TaskCompleted")
    assert any("terminal" in p for p in problems)
    problems = checks.stream_problems("t", [1, 2, 3, 4], _stream(), EXPECTED, "TaskFailed")
    assert any("terminal" in p for p in problems)


def test_outcomes_must_match_what_each_request_asked_for() -> None:
    expected = {"a": "TaskCompleted", "b": "TaskFailed"}
    assert checks.outcome_problems({"a": "TaskCompleted", "b": "TaskFailed"}, expected) == []
    problems = checks.outcome_problems({"a": "TaskCompleted"}, expected)
    assert problems == ["b: ended None, expected TaskFailed"]


def test_descendants_of_a_process_tree() -> None:
    parents = {1: 0, 10: 1, 11: 10, 12: 10, 20: 1, 30: 2}
    assert procstat.descendants(10, parents) == {10, 11, 12}
    assert procstat.descendants(1, parents) == {1, 10, 11, 12, 20}
    assert procstat.descendants(99, parents) == {99}


def test_cpu_share_is_cpu_seconds_per_wall_second() -> None:
    ticks = procstat.TICKS
    before = procstat.Snapshot(at=100.0, ticks={1: 0, 2: ticks})
    after = procstat.Snapshot(at=102.0, ticks={1: ticks, 2: 2 * ticks, 3: ticks})  # 3 is new
    assert procstat.share(before, after) == pytest.approx(1.5)


def test_profile_aggregation_of_collapsed_stacks() -> None:
    lines = [
        "main (a.py:1);ConsumerLoop.run (tasksaga/adapters/kafka_bus.py:1);"
        "Connection.wait (psycopg/connection.py:495) 6",
        "main (a.py:1);ConsumerLoop.run (tasksaga/adapters/kafka_bus.py:1);"
        "AvroCodec.decode (tasksaga/adapters/avro_codec.py:9) 2",
        "boot (t.py:1);Projector.catch_up (tasksaga/adapters/projections.py:1) 2",
        "",
        "garbage",
    ]
    result = profile.aggregate(lines)
    assert result.samples == 10
    assert result.threads[0] == ("consumer loop (handles messages)", 0.8)
    assert result.self_top[0] == ("Connection.wait (psycopg/connection.py:495)", 0.6)
    inclusive = dict(result.inclusive_top)
    assert inclusive["ConsumerLoop.run (tasksaga/adapters/kafka_bus.py:1)"] == 0.8
    assert "main (a.py:1)" not in inclusive  # only the project's and its libraries' frames
    assert profile.aggregate([]).samples == 0


def test_the_generator_decodes_only_task_events_that_may_end_a_task() -> None:
    from bench.ours import _may_be_terminal

    from tasksaga.adapters.wire import EVENT_TYPE_HEADER

    assert _may_be_terminal([(EVENT_TYPE_HEADER, b"TaskCompleted")])
    assert _may_be_terminal([("traceparent", b"00-ab"), (EVENT_TYPE_HEADER, b"TaskFailed")])
    assert not _may_be_terminal([(EVENT_TYPE_HEADER, b"StepCompleted")])
    assert _may_be_terminal(None)  # written before the header existed: decode it
    assert _may_be_terminal([("traceparent", b"00-ab")])
