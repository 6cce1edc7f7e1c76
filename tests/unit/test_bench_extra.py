import math
from collections import Counter

import pytest
from bench import extra_model
from bench.extra_phase import failed_parts
from bench.extra_report import render_extra
from bench.extra_tasks import BenchFanOut, BenchSleep, FanRequest, SleepRequest

from tasksaga.testing import SagaTestRun


def test_lateness_is_wake_minus_due_for_the_tasks_that_have_both() -> None:
    due = {"a": 1_000, "b": 2_000, "c": 3_000}
    woke = {"a": 1_004.0, "b": 2_050.0}
    assert sorted(extra_model.lateness_ms(due, woke)) == [4.0, 50.0]


def test_spread_gives_nearest_rank_percentiles_and_nan_when_empty() -> None:
    found = extra_model.spread(float(v) for v in range(1, 101))
    assert (found.count, found.p50, found.p99, found.max, found.mean) == (100, 50, 99, 100, 50.5)
    empty = extra_model.spread([])
    assert empty.count == 0 and math.isnan(empty.p99)
    assert empty.to_json()["p99"] == -1.0


def test_wake_times_are_one_every_1_over_rate_seconds_in_order() -> None:
    assert extra_model.wake_times(["x", "y", "z"], 100.0, 4.0) == {
        "x": 100_000, "y": 100_250, "z": 100_500}
    with pytest.raises(ValueError, match="positive"):
        extra_model.wake_times(["x"], 0.0, 0.0)


def test_rate_of_counts_intervals_between_first_and_last() -> None:
    assert extra_model.rate_of([0.0, 500.0, 1000.0]) == 2.0
    assert extra_model.rate_of([5.0]) == 0.0


def test_cost_per_step_is_cores_over_transitions_and_empty_without_steps() -> None:
    assert extra_model.cost_per_step({"orchestrator": 0.5, "kafka": 0.25}, 125.0) == {
        "orchestrator": 4000.0, "kafka": 2000.0}
    assert extra_model.cost_per_step({"orchestrator": 0.5}, 0.0) == {}


def test_throughput_ratio_is_none_when_a_side_is_missing() -> None:
    assert extra_model.throughput_ratio(150.0, 140.0) == 1.07
    assert extra_model.throughput_ratio(150.0, None) is None
    assert extra_model.throughput_ratio(0.0, 140.0) is None


def test_partitions_per_member_groups_by_member_and_topic_and_finds_double_owners() -> None:
    spread = extra_model.partitions_per_member([
        ("orch-1", [("t.step-results", 2), ("t.task-commands", 0), ("t.step-results", 0)]),
        ("orch-0", [("t.task-commands", 1)]),
    ])
    assert spread == {"orch-0": {"t.task-commands": [1]},
                      "orch-1": {"t.step-results": [0, 2], "t.task-commands": [0]}}
    assert extra_model.owned_twice(spread) == []
    twice = {**spread, "orch-2": {"t.task-commands": [0]}}
    assert extra_model.owned_twice(twice) == ["t.task-commands[0]"]


def test_rss_kib_reads_vmrss_and_none_for_a_zombie() -> None:
    assert extra_model.rss_kib("Name:\tpython\nVmRSS:\t   12345 kB\nThreads: 4\n") == 12345
    assert extra_model.rss_kib("Name:\tpython\nState:\tZ (zombie)\n") is None


def test_the_fan_out_and_sleep_expectations_match_the_logs_of_their_definitions() -> None:
    workload = extra_model.fan_out_workload(7)
    run = SagaTestRun(BenchFanOut)
    task = run.submit(FanRequest(payload="p", items=7))
    task.assert_completed()
    assert Counter(type(e).__name__ for e in task.events) == workload.expected_events(False)
    assert workload.step_executions(False) == 7
    run = SagaTestRun(BenchSleep)
    task = run.submit(SleepRequest(payload="p", wake_at_ms=1))
    task.assert_completed()
    assert Counter(type(e).__name__ for e in task.events) == \
        extra_model.SLEEP.expected_events(False)


def test_failed_parts_names_every_shape_whose_check_failed() -> None:
    extra = {"cost": {"check_problem_count": 0},
             "payload": {"payload-inline": {"check_problem_count": 2},
                         "payload-artifact": {"check_problem_count": 0}, "duration_s": 3},
             "scale": {"1+1": {"check_problem_count": 0}, "2+2": {"check_problem_count": 1},
                       "ratio": 1.0}}
    assert failed_parts(extra) == ["extra/payload/payload-inline", "extra/scale/2+2"]


def test_render_extra_shows_a_table_per_part_run() -> None:
    text = render_extra({"fanout": {"items": 1000, "seconds": 3.1, "transitions_per_s": 322.0,
                                    "us_per_step": {"worker": 1500.0}, "tasks_checked": 1,
                                    "check_problem_count": 0, "duration_s": 7}})
    assert "### One task, a dynamic fan-out (for_each) (7 s)" in text
    assert "| 1000 | 3.10 | 322.0 | worker 1,500 | passed (1 tasks) |" in text
    assert "Scale-out" not in text


def test_a_task_s_hops_are_the_gaps_between_its_moments_and_they_add_up() -> None:
    task = extra_model.TaskMoments(intended=10.0, sent=10.001, submitted_tx=10.006,
                                   first_start=10.016, last_end=10.020, completed_tx=10.032,
                                   received=10.040)
    hops = task.hops()
    assert [round(h, 3) for h in hops] == [1.0, 5.0, 10.0, 4.0, 12.0, 8.0, 40.0]
    assert math.isclose(sum(hops[:-1]), hops[-1])
    assert len(hops) == len(extra_model.HOPS)


def test_the_hop_breakdown_gives_each_hop_its_own_percentiles() -> None:
    tasks = [extra_model.TaskMoments(0.0, 0.001, 0.002, 0.003 + i / 1000, 0.004 + i / 1000,
                                     0.005 + i / 1000, 0.006 + i / 1000) for i in range(100)]
    found = extra_model.hop_breakdown(tasks)
    assert found["dispatch"] == {"p50": 50.0, "p90": 90.0, "p99": 99.0}
    assert found["steps"]["p99"] == 1.0
    assert found["end-to-end"]["p50"] == 55.0
    assert extra_model.hop_breakdown([]) == {}


def test_the_hops_table_names_every_hop() -> None:
    tasks = [extra_model.TaskMoments(0.0, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006)]
    text = render_extra({"hops": {"hops_ms": extra_model.hop_breakdown(tasks), "offered": 88.0,
                                  "achieved": 88.0, "tasks": 1, "cpu_cores": {},
                                  "check_problem_count": 0, "tasks_checked": 1}})
    assert "Where the end-to-end time goes" in text
    for _, label in extra_model.HOPS:
        assert label in text
