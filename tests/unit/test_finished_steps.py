"""Which commands a worker need not run because the projections show their answer."""

from __future__ import annotations

from tasksaga.core import messages as msg
from tasksaga.worker.finished_steps import why_finished


def execute(attempt: int = 1) -> msg.ExecuteStep:
    return msg.ExecuteStep("t", "T", "S", attempt, "q", "{}", {}, f"t:S:{attempt}", 0)


def compensate(attempt: int = 1, surplus: int = 0) -> msg.CompensateStep:
    return msg.CompensateStep("t", "T", "S", attempt, "q", "{}", {}, f"t:S:c{attempt}",
                              surplus_attempt=surplus)


def test_a_running_or_unprojected_step_runs() -> None:
    assert why_finished(execute(), None, None, 0, 0) is None
    assert why_finished(execute(), "Running", None, 0, 0) is None
    assert why_finished(execute(2), "Running", "RetryScheduled", 1, 0) is None
    assert why_finished(execute(), "Running", "Running", 1, 0) is None


def test_an_answered_or_superseded_attempt_or_an_ended_task_is_skipped() -> None:
    assert why_finished(execute(), "Running", "Completed", 1, 0) is not None
    assert why_finished(execute(), "Running", "RetryScheduled", 1, 0) is not None
    assert why_finished(execute(1), "Running", "Running", 2, 0) is not None
    assert why_finished(execute(), "Completed", "Completed", 1, 0) is not None


def test_compensations_are_skipped_once_done_and_never_for_surplus_effects() -> None:
    assert why_finished(compensate(), "Compensating", "Compensating", 1, 1) is None
    assert why_finished(compensate(), "Failed", "Compensated", 1, 1) is not None
    assert why_finished(compensate(1), "Compensating", "Compensating", 1, 2) is not None
    assert why_finished(compensate(1, surplus=2), "Failed", "Compensated", 1, 1) is None
    # An operator's retry of a failed compensation is a new, higher attempt: it runs.
    assert why_finished(compensate(2), "CompensationFailed", "CompensationFailed", 1, 1) is None


def test_an_operator_forward_retry_runs_while_the_projection_still_says_needs_attention() -> None:
    assert why_finished(execute(4), "NeedsAttention", "Failed", 3, 0) is None
    assert why_finished(execute(3), "NeedsAttention", "Failed", 3, 0) is not None  # answered
