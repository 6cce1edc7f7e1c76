"""The benchmark's open-loop core: schedule, latency from intended times, percentiles, verdict.

Nothing here is timed: these are the pure functions the generator's figures rest on.
"""

from __future__ import annotations

import math

import pytest
from bench import loadgen, rate_search
from hypothesis import given
from hypothesis import strategies as st


def test_the_schedule_is_fixed_in_advance_at_the_offered_rate() -> None:
    times = loadgen.intended_times(100.0, rate=4.0, duration_s=2.0)
    assert times == [100.0, 100.25, 100.5, 100.75, 101.0, 101.25, 101.5, 101.75]


def test_the_schedule_does_not_drift_over_many_requests() -> None:
    times = loadgen.intended_times(0.0, rate=1000.0, duration_s=60.0)
    assert len(times) == 60_000
    assert times[-1] == pytest.approx(59.999)


def test_an_empty_schedule_for_no_rate_or_no_time() -> None:
    assert loadgen.intended_times(0.0, 0.0, 10.0) == []
    assert loadgen.intended_times(0.0, 10.0, 0.0) == []


def test_a_late_generator_sends_every_overdue_request_at_once_and_skips_none() -> None:
    times = [0.0, 0.1, 0.2, 0.3, 0.4]
    assert loadgen.due_count(times, now=0.05, already_sent=0) == 1
    # Stalled until 0.35: three are overdue and all go now, none is dropped or shifted.
    assert loadgen.due_count(times, now=0.35, already_sent=1) == 3
    assert loadgen.due_count(times, now=10.0, already_sent=4) == 1
    assert loadgen.due_count(times, now=10.0, already_sent=5) == 0


def test_latency_counts_from_the_intended_send_time_not_the_actual_one() -> None:
    # The generator stalled: request 2 was due at 1.0 but went out at 3.0 and completed at 3.1.
    # A closed-loop tool would report 0.1 s; the user waited 2.1 s.
    intended = [0.0, 1.0]
    completed: list[float | None] = [0.1, 3.1]
    assert loadgen.latencies_from_intended(intended, completed) == pytest.approx([0.1, 2.1])


def test_a_request_that_never_completed_has_infinite_latency() -> None:
    latencies = loadgen.latencies_from_intended([0.0, 1.0], [0.5, None])
    assert latencies[1] == math.inf
    summary = loadgen.summarize(latencies)
    assert summary.max == math.inf
    assert summary.mean == math.inf


def test_latencies_need_one_completion_per_request() -> None:
    with pytest.raises(ValueError):
        loadgen.latencies_from_intended([0.0], [])


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert loadgen.percentile(values, 50) == 50.0
    assert loadgen.percentile(values, 95) == 95.0
    assert loadgen.percentile(values, 99) == 99.0
    assert loadgen.percentile(values, 100) == 100.0
    assert loadgen.percentile(values, 0) == 1.0
    assert loadgen.percentile([7.0], 99) == 7.0
    assert math.isnan(loadgen.percentile([], 50))
    with pytest.raises(ValueError):
        loadgen.percentile(values, 101)


def test_a_percentile_is_always_an_observed_value() -> None:
    values = [1.0, 10.0]
    assert loadgen.percentile(values, 50) == 1.0
    assert loadgen.percentile(values, 51) == 10.0


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=200))
def test_percentiles_are_ordered_and_within_the_data(values: list[float]) -> None:
    summary = loadgen.summarize(values)
    assert min(values) <= summary.p50 <= summary.p95 <= summary.p99 <= summary.max
    assert summary.max == max(values)
    assert summary.count == len(values)


def test_the_summary_of_nothing_is_empty() -> None:
    summary = loadgen.summarize([])
    assert summary.count == 0
    assert math.isnan(summary.p99)


def test_achieved_rate_counts_completions_inside_the_window_only() -> None:
    completions: list[float | None] = [0.5, 1.0, 1.5, 2.0, 2.5, None, 3.0]
    assert loadgen.achieved_rate(completions, 1.0, 3.0) == 2.0  # 1.0 1.5 2.0 2.5
    with pytest.raises(ValueError):
        loadgen.achieved_rate(completions, 2.0, 2.0)


def test_backlog_is_sent_and_not_yet_completed() -> None:
    sent = [0.0, 0.1, 0.2, 0.3]
    completed: list[float | None] = [0.05, 0.5, None, 0.31]
    assert loadgen.backlog_at(sent, completed, 0.25) == 2
    assert loadgen.backlog_at(sent, completed, 0.6) == 1


def test_slope_of_a_growing_and_of_a_flat_backlog() -> None:
    growing = [(float(t), 3.0 * t + 5) for t in range(10)]
    assert loadgen.slope(growing) == pytest.approx(3.0)
    flat = [(float(t), 4.0 + (t % 2)) for t in range(10)]
    assert abs(loadgen.slope(flat)) < 0.1
    assert loadgen.slope([(1.0, 5.0)]) == 0.0
    assert loadgen.slope([(1.0, 5.0), (1.0, 9.0)]) == 0.0


def test_sustainable_when_achieved_equals_offered_and_the_backlog_is_flat() -> None:
    verdict = rate_search.sustainability(100.0, 99.0, backlog_slope=0.5, final_backlog=12)
    assert verdict.sustainable


def test_not_sustainable_when_achieved_falls_short() -> None:
    verdict = rate_search.sustainability(100.0, 80.0, backlog_slope=0.0, final_backlog=0)
    assert not verdict.sustainable
    assert "achieved" in verdict.reason


def test_not_sustainable_when_the_backlog_grows_even_if_throughput_looks_fine() -> None:
    verdict = rate_search.sustainability(100.0, 99.0, backlog_slope=20.0, final_backlog=50)
    assert not verdict.sustainable
    assert "backlog grows" in verdict.reason


def test_not_sustainable_when_more_than_a_second_of_load_is_left_queued() -> None:
    verdict = rate_search.sustainability(100.0, 100.0, backlog_slope=0.0, final_backlog=250)
    assert not verdict.sustainable


def test_not_sustainable_when_some_request_never_completed() -> None:
    verdict = rate_search.sustainability(10.0, 10.0, 0.0, 0, completed_all=False)
    assert not verdict.sustainable


def test_one_request_of_noise_at_a_low_rate_is_not_a_failure() -> None:
    # 0.6/s over 10 s: 6 requests; 5 in the window is a quantisation effect, not overload.
    assert rate_search.sustainability(0.6, 0.5, 0.05, 1, window_s=10.0).sustainable


def test_the_rate_search_goes_up_while_everything_passes() -> None:
    assert rate_search.next_rate([], start=100.0) == 100.0
    assert rate_search.next_rate([(100.0, True)], start=100.0, up=1.5) == 150.0


def test_the_rate_search_goes_down_while_everything_fails() -> None:
    assert rate_search.next_rate([(100.0, False)], start=100.0, down=0.5) == 50.0
    assert rate_search.next_rate([(1.5, False)], start=1.5, down=0.5, floor=1.0) is None


def test_the_rate_search_bisects_a_bracket_until_it_is_narrow() -> None:
    history = [(100.0, True), (200.0, False)]
    assert rate_search.next_rate(history, start=100.0) == pytest.approx(math.sqrt(2) * 100)
    narrow = [(100.0, True), (105.0, False)]
    assert rate_search.next_rate(narrow, start=100.0, resolution=1.1) is None


def test_the_rate_search_stops_after_its_point_budget_once_the_limit_is_bracketed() -> None:
    history = [(100.0, True), (200.0, False), (141.0, True), (168.0, False)]
    assert rate_search.next_rate(history, start=100.0, max_points=4) is None
    # Bracketed from above: three failures going down, then a pass.
    from_above = [(100.0, False), (80.0, False), (64.0, False), (51.2, True)]
    assert rate_search.next_rate(from_above, start=100.0, down=0.8, max_points=4) is None


def test_the_rate_search_goes_on_down_past_its_budget_until_a_rate_passes() -> None:
    # A start above capacity: four failures spend a four-point budget, yet there is no maximum.
    history = [(100.0 * 0.8**i, False) for i in range(4)]
    assert rate_search.next_rate(history, start=100.0, down=0.8, max_points=4) == pytest.approx(
        100.0 * 0.8**4)


def test_the_rate_search_without_a_pass_still_ends_at_twice_its_budget_or_the_floor() -> None:
    history = [(100.0 * 0.8**i, False) for i in range(8)]
    assert rate_search.next_rate(history, start=100.0, down=0.8, max_points=4) is None
    assert rate_search.next_rate([(1.2, False)], start=1.2, down=0.8, max_points=4,
                                 floor=1.0) is None


def test_the_rate_search_goes_on_up_past_its_budget_until_a_rate_fails() -> None:
    # A start below capacity: four passes spend a four-point budget, but 1.2^3 x the start
    # would only be a lower bound of the maximum.
    history = [(100.0 * 1.2**i, True) for i in range(4)]
    assert rate_search.next_rate(history, start=100.0, up=1.2, max_points=4) == pytest.approx(
        100.0 * 1.2**4)
    everything_passed = [(100.0 * 1.2**i, True) for i in range(8)]
    assert rate_search.next_rate(everything_passed, start=100.0, up=1.2, max_points=4) is None


def test_a_pass_above_every_failure_keeps_searching_upwards() -> None:
    # Noise: 100 failed once, then 120 passed. The limit is above 120.
    assert rate_search.next_rate([(100.0, False), (120.0, True)], start=100.0, up=1.25) == 150.0


def test_max_sustainable_is_the_highest_passing_rate() -> None:
    assert rate_search.max_sustainable([(100.0, True), (130.0, True), (160.0, False)]) == 130.0
    assert rate_search.max_sustainable([(100.0, False)]) is None


def test_the_tracker_counts_backlog_and_ignores_duplicate_completions() -> None:
    tracker = loadgen.Tracker()
    for index in range(3):
        tracker.add(loadgen.TaskRecord(f"t{index}", float(index), fail=False))
        tracker.mark_sent(f"t{index}", float(index))
    tracker.complete("t0", 5.0, "TaskCompleted", [0.001])
    tracker.complete("t0", 6.0, "TaskCompleted")  # redelivered terminal event
    tracker.complete("unknown", 6.0, "TaskCompleted")
    assert tracker.backlog() == 2
    assert tracker.done() == 1
    assert tracker.duplicates == 1
    assert tracker.records["t0"].completed == 5.0
    assert tracker.records["t0"].dispatch == [0.001]

