"""Which step commands a worker skips: expired, superseded, already running or answered."""

from __future__ import annotations

from tasksaga.core import messages as msg
from tasksaga.worker.guard import CommandGuard

NOW = 1_000_000


def _execute(attempt: int = 1, timeout_at_ms: int = NOW + 1_000,
             task: str = "t1") -> msg.ExecuteStep:
    return msg.ExecuteStep(task, "T", "S", attempt, "q", "{}", {}, f"{task}:S:{attempt}",
                           timeout_at_ms, attempt)


def test_a_command_whose_step_timed_out_is_skipped_by_the_injected_clock() -> None:
    guard = CommandGuard(lambda: NOW, clock_skew_ms=0)
    assert guard.admit("m1", _execute(timeout_at_ms=NOW)) == (
        "its step timed out before it could start")
    assert guard.admit("m2", _execute(timeout_at_ms=NOW + 1)) is None


def test_a_worker_whose_clock_runs_ahead_still_runs_commands_within_the_skew() -> None:
    # timeout_at_ms is on the orchestrators' (database) clock; this worker's is 30 s ahead.
    guard = CommandGuard(lambda: NOW + 30_000)
    assert guard.admit("m1", _execute(timeout_at_ms=NOW + 1_000)) is None
    assert guard.admit("m2", _execute(timeout_at_ms=NOW - 60_000, task="t2")) == (
        "its step timed out before it could start")


def test_an_older_attempt_arriving_after_a_newer_one_is_superseded() -> None:
    guard = CommandGuard(lambda: NOW)
    assert guard.admit("m2", _execute(attempt=2)) is None
    assert guard.admit("m1", _execute(attempt=1)) == "superseded by attempt 2"


def test_a_redelivered_command_is_skipped_while_running_or_once_answered() -> None:
    guard = CommandGuard(lambda: NOW)
    assert guard.admit("m1", _execute()) is None
    assert guard.admit("m1", _execute()) == "already running here"
    guard.answered("m1")
    assert guard.admit("m1", _execute()) == "already answered"


def test_an_abandoned_command_may_run_again_when_redelivered() -> None:
    guard = CommandGuard(lambda: NOW)
    guard.admit("m1", _execute())
    guard.abandoned("m1")  # its partition was revoked before it answered
    assert guard.admit("m1", _execute()) is None


def test_compensations_are_told_apart_from_executions_and_surplus_undos() -> None:
    guard = CommandGuard(lambda: NOW)
    undo = msg.CompensateStep("t1", "T", "S", 1, "q", "{}", {}, "k")
    undo_surplus = msg.CompensateStep("t1", "T", "S", 1, "q", "{}", {}, "k2", surplus_attempt=2)
    assert guard.admit("m3", _execute(attempt=3)) is None
    assert guard.admit("c1", undo) is None
    assert guard.admit("c2", undo_surplus) is None


def test_the_records_are_bounded() -> None:
    guard = CommandGuard(lambda: NOW)
    guard.REMEMBERED = 10
    for index in range(50):
        guard.admit(f"m{index}", _execute(task=f"t{index}"))
        guard.answered(f"m{index}")
    assert guard.admit("m0", _execute(task="t0")) is None  # forgotten: runs again
    assert guard.admit("m49", _execute(task="t49")) == "already answered"


def test_a_copy_resent_under_another_message_id_is_skipped_while_running_or_answered() -> None:
    # An operator's redrive resends the same dispatch (kind, task, step, attempt) anew.
    guard = CommandGuard(lambda: NOW)
    assert guard.admit("m1", _execute()) is None
    assert guard.admit("redrive-1", _execute()) == "a copy of it is already running here"
    guard.answered("m1")
    assert guard.admit("redrive-2", _execute()) == "a copy of it was already answered"


def test_a_resent_copy_runs_when_the_first_copy_was_abandoned() -> None:
    guard = CommandGuard(lambda: NOW)
    guard.admit("m1", _execute())
    guard.abandoned("m1")
    assert guard.admit("redrive-1", _execute()) is None
