"""The audit says exactly what happened."""

from __future__ import annotations

from tasksaga.core import events as ev
from tasksaga.core.audit import describe
from tasksaga.core.state import TaskState, evolve, fold

SUBMITTED = ev.TaskSubmitted("t", "T", "{}", None, None, 0, None)


def test_a_task_that_failed_before_anything_completed_says_nothing_was_compensated() -> None:
    state = fold([SUBMITTED, ev.StepDispatched("A", 1, "q", 1, 100),
                  ev.StepFailed("A", 1, "Boom", "no", False, 2)])
    started = ev.CompensationStarted("step A failed", 3)
    assert describe(started, state).startswith("nothing completed, nothing to compensate")
    failed = ev.TaskFailed("step A failed", 4)
    assert describe(failed, evolve(state, started)) == (
        "task failed, nothing to compensate: step A failed")


def test_a_task_that_compensated_says_so() -> None:
    state = fold([SUBMITTED, ev.StepDispatched("A", 1, "q", 1, 100),
                  ev.StepCompleted("A", 1, "{}", 2), ev.CompensationStarted("x", 3),
                  ev.StepCompensationDispatched("A", 1, 4), ev.StepCompensated("A", 1, 5)])
    assert describe(ev.TaskFailed("x", 6), state) == "task failed, compensated: x"


def test_a_scheduled_retry_says_how_long_it_waits_and_when_it_fires() -> None:
    noon = 1_796_126_401_234  # 2026-12-01 12:00:01.234 UTC
    line = describe(ev.StepRetryScheduled("A", 2, noon), TaskState(), at_ms=noon - 400)
    assert line == "step A retry scheduled (attempt 2) in 400 ms (at 12:00:01.234 UTC)"
