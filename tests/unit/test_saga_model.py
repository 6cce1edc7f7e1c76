"""The full saga model on a fake clock: groups, heartbeats, operator retry, names."""

from __future__ import annotations

from tasksaga.core import RetryPolicy
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.definition import AwaitMode
from tasksaga.core.state import StepStatus, TaskStatus
from tests.unit.sagas import Data, Driver, Req, _noop, any_group, linear


def test_an_any_group_moves_on_at_the_first_success_and_stops_the_others() -> None:
    d = Driver(any_group())
    d.submit()
    d.succeed("A")
    assert d.running() == ["M1", "M2", "M3"]
    d.succeed("M2")
    assert sorted(d.cancels()) == ["M1", "M3"]
    assert "C" in d.dispatched()
    d.fail("M1", retryable=False, error="Cancelled")
    d.fail("M3", retryable=False, error="Cancelled")
    assert d.state.status == TaskStatus.RUNNING  # a superseded member's failure is no failure
    d.succeed("C")
    assert d.state.status == TaskStatus.COMPLETED


def test_an_any_group_fails_only_when_every_member_failed() -> None:
    d = Driver(any_group())
    d.submit()
    d.succeed("A")
    d.fail("M1", retryable=False)
    d.fail("M2", retryable=False)
    assert d.state.status == TaskStatus.RUNNING
    d.fail("M3", retryable=False)
    assert d.state.status == TaskStatus.COMPENSATING
    assert d.compensations() == ["A"]


def test_a_quorum_group_needs_n_successes_and_fails_when_n_is_out_of_reach() -> None:
    d = Driver(any_group(AwaitMode.QUORUM, quorum=2))
    d.submit()
    d.succeed("A")
    d.succeed("M1")
    assert "C" not in d.dispatched()
    d.succeed("M3")
    assert "C" in d.dispatched() and d.cancels() == ["M2"]

    d2 = Driver(any_group(AwaitMode.QUORUM, quorum=2))
    d2.submit()
    d2.succeed("A")
    d2.fail("M1", retryable=False)
    d2.fail("M2", retryable=False)
    assert d2.state.status == TaskStatus.COMPENSATING
    assert d2.cancels() == ["M3"]


def test_the_task_completes_only_after_superseded_members_answered() -> None:
    d = Driver(any_group())
    d.submit()
    d.succeed("A")
    d.succeed("M1")
    d.succeed("C")
    assert d.state.status == TaskStatus.RUNNING  # M2, M3 still running
    d.fail("M2", retryable=False, error="Cancelled")
    d.succeed("M3")  # it finished before the cancellation reached it
    assert d.state.status == TaskStatus.COMPLETED


def test_a_missed_heartbeat_fails_the_attempt_and_it_is_retried() -> None:
    task = linear(1, retry=RetryPolicy(max_retries=1, delay_ms=0))
    task.get_step("S1").heartbeat_timeout_seconds = 5
    d = Driver(task)
    d.submit()
    assert d.advance(20_000) == []  # queued, not started: no heartbeat deadline yet
    d.start("S1")  # the worker's start report arms the heartbeat deadline
    d.advance(4_000)
    d.send(msg.StepHeartbeat("t1", "S1", 1, 0.5, "half"))
    assert d.advance(4_000) == []  # the heartbeat pushed the deadline
    d.advance(1_000)
    failed = [e for e in d.events if isinstance(e, ev.StepFailed)]
    assert failed[-1].error_type == "HeartbeatMissed" and failed[-1].will_retry
    d.fire_due()
    assert d.dispatched() == ["S1", "S1"]


def test_heartbeats_of_an_old_attempt_change_nothing() -> None:
    task = linear(1)
    task.get_step("S1").heartbeat_timeout_seconds = 5
    d = Driver(task)
    d.submit()
    assert d.send(msg.StepHeartbeat("t1", "S1", 7, None, None)).is_empty


def test_an_operator_can_retry_a_failed_compensation() -> None:
    d = Driver(linear(2))
    d.submit()
    d.succeed("S1")
    d.fail("S2", retryable=False)
    d.send(msg.CompensationAttemptFailed("t1", "S1", 1, "S3Down", "unreachable", "abc123"))
    assert d.state.status == TaskStatus.COMPENSATION_FAILED
    failure = d.events[-1]
    assert isinstance(failure, ev.TaskCompensationFailed) and failure.trace_id == "abc123"
    d.send(msg.RetryCompensation("t1", d.now))
    assert d.state.status == TaskStatus.COMPENSATING
    assert d.compensations() == ["S1", "S1"]
    d.compensated("S1")
    assert d.state.status == TaskStatus.FAILED


def test_retry_compensation_is_ignored_unless_the_task_needs_it() -> None:
    d = Driver(linear(1))
    d.submit()
    assert d.send(msg.RetryCompensation("t1", d.now)).is_empty


def test_a_step_without_its_own_policy_inherits_the_tasks() -> None:
    from tasksaga.core import TaskDefinition

    task = TaskDefinition("T", queue="q", request=Req,
                          retry=RetryPolicy(max_retries=2, delay_ms=7))
    task.step("S", order=1, data=Data)(_noop)
    d = Driver(task)
    d.submit()
    d.fail("S")
    scheduled = [e for e in d.events if isinstance(e, ev.StepRetryScheduled)]
    assert scheduled[0].fire_at_ms == d.now + 7


def test_policies_conditions_and_compensations_attach_by_step_name() -> None:
    from tasksaga.core import TaskDefinition

    task = TaskDefinition("T", queue="q", request=Req)
    task.retry_policy("S", RetryPolicy(max_retries=4))
    task.condition("S", "always", lambda ctx: True)
    task.step("S", order=1, data=Data)(_noop)
    assert task.get_step("S").retry == RetryPolicy(max_retries=4)
    assert task.get_step("S").condition is not None


def test_cancelled_steps_are_told_once_even_when_asked_twice() -> None:
    d = Driver(linear(2))
    d.submit()
    d.send(msg.CancelTask("t1", "first", d.now))
    d.send(msg.CancelTask("t1", "second", d.now))
    assert d.cancels() == ["S1"]
    assert d.state.step("S1").cancel_requested
    assert d.state.step("S1").status is StepStatus.RUNNING
