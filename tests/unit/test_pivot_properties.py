"""Pivot rules over arbitrary interleavings of outcomes, cancellations, timeouts and operator
retries (hypothesis): once the pivot completed, nothing is ever compensated."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.state import TaskStatus
from tests.unit.pivot_sagas import AFTER_PIVOT, pivoted
from tests.unit.sagas import Driver

OUTCOMES = ("succeed", "fail", "fail_final", "cancel", "tick", "operator")
UNDOING = (ev.CompensationStarted, ev.StepCompensationDispatched, ev.StepCompensated,
           ev.StepCompensationFailed, ev.TaskFailed, ev.TaskCancelled)


def run(retries: int, script: list[tuple[str, int]]) -> Driver:
    d = Driver(pivoted(retries=retries, timeout_seconds=3600))
    d.submit()
    for outcome, pick in script:
        if d.state.status is TaskStatus.NEEDS_ATTENTION and outcome == "operator":
            d.send(msg.RetryForward("t1", d.now))
            continue
        if d.state.status.is_terminal:
            break
        if d.compensating():
            d.compensated(d.compensating()[0])
            continue
        running = d.running()
        if outcome == "cancel":
            d.send(msg.CancelTask("t1", "property test", d.now))
        elif outcome in ("tick", "operator") or not running:
            d.advance(pick * 1_000_000)  # up to the task's timeout and beyond
        else:
            step = running[pick % len(running)]
            if outcome == "succeed":
                d.succeed(step)
            else:
                d.fail(step, retryable=outcome == "fail")
    for _ in range(300):  # drain: failures keep failing, so forward recovery runs out
        if d.state.status.is_terminal:
            break
        if d.compensating():
            d.compensated(d.compensating()[0])
        elif d.running():
            d.fail(d.running()[0])
        else:
            d.advance(100_000)
    return d


scripts = st.lists(st.tuples(st.sampled_from(OUTCOMES), st.integers(0, 5)), max_size=40)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2), scripts)
def test_for_any_failure_point_after_the_pivot_no_compensation_is_ever_decided(
    retries: int, script: list[tuple[str, int]]
) -> None:
    d = run(retries, script)
    assert d.state.status.is_terminal
    shipped = next((i for i, e in enumerate(d.events)
                    if isinstance(e, ev.StepCompleted) and e.step == "Ship"), None)
    if shipped is None:
        assert d.state.status in (TaskStatus.FAILED, TaskStatus.CANCELLED)
        assert not [e for e in d.events if isinstance(e, ev.TaskNeedsAttention)]
        return
    after = d.events[shipped + 1:]
    assert not [e for e in after if isinstance(e, UNDOING)]
    assert d.compensations() == []  # the pivot's steps declare none, and none before it ran
    assert d.state.status in (TaskStatus.COMPLETED, TaskStatus.NEEDS_ATTENTION)
    for stop in (e for e in after if isinstance(e, ev.TaskNeedsAttention)):
        assert stop.pivot == "Ship" and stop.step in AFTER_PIVOT


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2), scripts)
def test_a_task_that_needs_attention_has_nothing_running_and_names_a_failed_step(
    retries: int, script: list[tuple[str, int]]
) -> None:
    d = run(retries, script)
    if d.state.status is TaskStatus.NEEDS_ATTENTION:
        stop = d.events[-1]
        assert isinstance(stop, ev.TaskNeedsAttention)
        assert d.running() == []
        assert d.state.step(stop.step).error_type == stop.error_type
