"""The saga rules of decide(), on a fake clock."""

from __future__ import annotations

from tasksaga.core import RetryPolicy
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.state import StepStatus, TaskStatus
from tests.unit.sagas import Driver, grouped, linear


def test_a_linear_task_runs_its_steps_in_order_and_completes() -> None:
    d = Driver(linear(3))
    d.submit()
    assert d.dispatched() == ["S1"]
    d.succeed("S1")
    assert d.dispatched() == ["S1", "S2"]
    d.succeed("S2")
    d.succeed("S3")
    assert d.state.status == TaskStatus.COMPLETED
    assert isinstance(d.events[-1], ev.TaskCompleted)


def test_each_step_command_carries_the_data_of_earlier_steps_and_an_idempotency_key() -> None:
    d = Driver(linear(2))
    d.submit()
    d.succeed("S1")
    command = d.commands[-1]
    assert isinstance(command, msg.ExecuteStep)
    assert command.step == "S2"
    assert set(command.step_data) == {"S1"}
    assert command.idempotency_key == "t1:S2:1"


def test_failure_at_the_last_step_compensates_completed_steps_in_reverse_order() -> None:
    d = Driver(linear(3))
    d.submit()
    d.succeed("S1")
    d.succeed("S2")
    d.fail("S3", retryable=False)
    assert d.state.status == TaskStatus.COMPENSATING
    assert d.compensations() == ["S2"]
    d.compensated("S2")
    assert d.compensations() == ["S2", "S1"]
    d.compensated("S1")
    assert d.state.status == TaskStatus.FAILED
    assert d.state.step("S3").status is StepStatus.FAILED  # the failed step is not compensated


def test_a_retryable_failure_is_retried_after_the_backoff_delay() -> None:
    d = Driver(linear(1, retry=RetryPolicy(max_retries=2, delay_ms=1000)))
    d.submit()
    d.fail("S1")
    assert d.state.step("S1").status is StepStatus.RETRY_SCHEDULED
    assert d.advance(999) == []
    assert d.dispatched() == ["S1"]
    d.advance(1)
    assert d.dispatched() == ["S1", "S1"]
    assert d.state.step("S1").attempt == 2


def test_retries_stop_at_max_retries_then_the_task_compensates() -> None:
    d = Driver(linear(2, retry=RetryPolicy(max_retries=1, delay_ms=10)))
    d.submit()
    d.succeed("S1")
    d.fail("S2")
    d.advance(10)
    d.fail("S2")
    assert d.state.step("S2").status is StepStatus.FAILED
    assert d.compensations() == ["S1"]


def test_a_step_without_result_times_out_and_is_retried() -> None:
    d = Driver(linear(1, retry=RetryPolicy(max_retries=1, delay_ms=0)))
    d.submit()
    d.start("S1")
    d.advance(30_000)  # the step timeout of the definition
    failed = [e for e in d.events if isinstance(e, ev.StepFailed)]
    assert failed[0].error_type == "StepTimedOut" and failed[0].will_retry
    d.fire_due()
    assert d.dispatched() == ["S1", "S1"]


def test_a_late_result_of_a_timed_out_attempt_still_completes_the_step() -> None:
    d = Driver(linear(1, retry=RetryPolicy(max_retries=1, delay_ms=5_000)))
    d.submit()
    d.start("S1")
    d.advance(30_000)
    d.succeed("S1", attempt=1)
    assert d.state.status == TaskStatus.COMPLETED


def test_duplicate_and_stale_results_change_nothing() -> None:
    d = Driver(linear(2))
    d.submit()
    d.succeed("S1")
    assert d.succeed("S1", attempt=1).is_empty
    assert d.send(msg.StepAttemptFailed("t1", "S1", 1, "X", "late", True)).is_empty
    assert d.send(msg.SubmitTask("t1", "Linear", "{}", None, None, 0)).is_empty


def test_cancellation_signals_running_steps_then_compensates_what_completed() -> None:
    d = Driver(linear(3))
    d.submit()
    d.succeed("S1")
    d.send(msg.CancelTask("t1", "user asked", d.now))
    cancels = [c for c in d.commands if isinstance(c, msg.CancelStep)]
    assert [c.step for c in cancels] == ["S2"]
    assert d.compensations() == []  # waits for the running step to stop
    d.fail("S2", retryable=True, error="Cancelled")
    assert d.state.step("S2").status is StepStatus.FAILED  # no retry after cancellation
    assert d.compensations() == ["S1"]
    d.compensated("S1")
    assert d.state.status == TaskStatus.CANCELLED
    assert "S3" not in d.dispatched()


def test_a_non_cancellable_or_finished_task_ignores_cancel() -> None:
    d = Driver(linear(1, cancellable=False))
    d.submit()
    assert d.send(msg.CancelTask("t1", "no", d.now)).is_empty
    d2 = Driver(linear(1))
    d2.submit()
    d2.succeed("S1")
    assert d2.send(msg.CancelTask("t1", "late", d2.now)).is_empty


def test_the_task_timeout_cancels_and_compensates() -> None:
    d = Driver(linear(2, timeout_seconds=10))
    d.submit()
    d.succeed("S1")
    d.advance(10_000)
    assert any(isinstance(e, ev.CancellationRequested) for e in d.events)
    d.fail("S2", retryable=False, error="Cancelled")
    d.compensated("S1")
    assert d.state.status == TaskStatus.CANCELLED


def test_a_compensation_that_keeps_failing_ends_in_compensation_failed() -> None:
    d = Driver(linear(2))
    d.submit()
    d.succeed("S1")
    d.fail("S2", retryable=False)
    d.send(msg.CompensationAttemptFailed("t1", "S1", 1, "S3Down", "unreachable"))
    assert d.state.status == TaskStatus.COMPENSATION_FAILED
    last = d.events[-1]
    assert isinstance(last, ev.TaskCompensationFailed) and last.step == "S1"


def test_a_failed_compensation_is_retried_per_its_policy() -> None:
    task = linear(2)
    task.get_step("S1").compensation_retry = RetryPolicy(max_retries=1, delay_ms=100)
    d = Driver(task)
    d.submit()
    d.succeed("S1")
    d.fail("S2", retryable=False)
    d.send(msg.CompensationAttemptFailed("t1", "S1", 1, "S3Down", "unreachable"))
    assert d.state.step("S1").status is StepStatus.COMPENSATION_RETRY_SCHEDULED
    d.advance(100)
    assert d.compensations() == ["S1", "S1"]
    d.compensated("S1")
    assert d.state.status == TaskStatus.FAILED


def test_a_parallel_group_launches_together_and_waits_for_all() -> None:
    d = Driver(grouped())
    d.submit(width=3840)
    d.succeed("A")
    assert d.running() == ["B1", "B2", "B3"]
    d.succeed("B2")
    d.succeed("B1")
    assert "C" not in d.dispatched()
    d.succeed("B3")
    assert d.dispatched()[-1] == "C"


def test_a_false_condition_skips_the_step_and_records_a_snapshot() -> None:
    d = Driver(grouped())
    d.submit(width=1920)
    d.succeed("A")
    snapshot = next(e for e in d.events if isinstance(e, ev.ConditionEvaluated))
    assert (snapshot.step, snapshot.result) == ("B3", False)
    assert snapshot.context_summary == "Width=1920"
    assert snapshot.function.endswith("is_4k")
    assert d.state.step("B3").status is StepStatus.SKIPPED
    assert d.running() == ["B1", "B2"]


def test_group_failure_compensates_completed_members_not_failed_or_skipped_ones() -> None:
    d = Driver(grouped())
    d.submit(width=1920)
    d.succeed("A")
    d.succeed("B1")
    d.fail("B2", retryable=False)
    assert d.compensations() == ["B1"]
    d.compensated("B1")
    assert d.compensations() == ["B1", "A"]
    d.compensated("A")
    assert d.state.status == TaskStatus.FAILED
    assert d.state.step("B3").status is StepStatus.SKIPPED


class CardError(Exception):
    pass


class CardNetworkTimeout(CardError):
    pass


def test_a_policy_naming_a_base_class_retries_its_subclasses_by_their_lineage() -> None:
    from tasksaga.core.retry import lineage_of

    d = Driver(linear(1, retry=RetryPolicy(max_retries=2, delay_ms=100, retry_on=CardError)))
    d.submit()
    lineage = list(lineage_of(CardNetworkTimeout("slow")))
    d.send(msg.StepAttemptFailed(d.state.task_id, "S1", 1, "CardNetworkTimeout", "slow", True,
                                 None, 0, lineage))
    assert d.state.step("S1").status is StepStatus.RETRY_SCHEDULED
    d.advance(100)
    d.send(msg.StepAttemptFailed(d.state.task_id, "S1", 2, "KeyError", "k", True, None, 0,
                                 list(lineage_of(KeyError("k")))))
    assert d.state.step("S1").status is StepStatus.FAILED  # not a CardError: no retry
