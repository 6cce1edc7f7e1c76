"""A step attempt's timeout counts from the worker's start report, not from its dispatch: a
backlog longer than the step timeout must not time out, retry and lengthen every queued step
(R2 and R3 of the chaos suite: after a fault, every attempt timed out in the queue and tasks
failed with their retries spent)."""

from __future__ import annotations

import pytest

from tasksaga.core import RetryPolicy, TaskDefinition
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tests.unit.sagas import Driver, Req, linear

STEP_MS = 30_000  # linear()'s step timeout
START_MS = 300_000  # the default start timeout


def _timeouts(d: Driver) -> list[ev.StepFailed]:
    return [e for e in d.events if isinstance(e, ev.StepFailed)]


def test_a_step_waiting_in_its_queue_longer_than_its_timeout_is_not_timed_out() -> None:
    d = Driver(linear(1, retry=RetryPolicy(max_retries=1, delay_ms=0)))
    d.submit()
    command = d.commands[0]
    assert isinstance(command, msg.ExecuteStep)
    assert command.timeout_at_ms == d.now + START_MS + STEP_MS
    d.advance(STEP_MS * 3)
    assert _timeouts(d) == []  # still queued: a worker will start it
    d.advance(START_MS + STEP_MS - STEP_MS * 3)
    assert [e.error_type for e in _timeouts(d)] == ["StepTimedOut"]
    assert "no worker started it within 300 s" in _timeouts(d)[0].error_message


def test_the_start_report_makes_the_step_timeout_count_from_the_start() -> None:
    d = Driver(linear(1))
    d.submit()
    d.advance(100_000)  # waited in a backlog
    d.start("S1")
    d.advance(STEP_MS - 1)
    assert _timeouts(d) == []
    d.advance(1)
    assert [e.error_type for e in _timeouts(d)] == ["StepTimedOut"]


def test_a_start_report_of_another_attempt_moves_no_deadline() -> None:
    d = Driver(linear(1, retry=RetryPolicy(max_retries=2, delay_ms=0)))
    d.submit()
    d.start("S1")
    d.advance(STEP_MS)
    d.fire_due()  # attempt 2 dispatched
    assert d.state.step("S1").attempt == 2
    stale = msg.StepHeartbeat("t1", "S1", 1, None, None, 0, started=True)
    assert d.send(stale).timers == []
    forged = msg.StepHeartbeat("t1", "S1", 2, None, None, 999_999, started=True)
    assert d.send(forged).timers == []  # a fencing token of no dispatch


def test_a_plain_heartbeat_does_not_restart_the_step_timeout() -> None:
    d = Driver(linear(1))
    d.submit()
    d.start("S1")
    d.advance(STEP_MS // 2)
    d.send(msg.StepHeartbeat("t1", "S1", 1, 0.5, "half", d.state.step("S1").fencing_token))
    d.advance(STEP_MS // 2)
    assert [e.error_type for e in _timeouts(d)] == ["StepTimedOut"]


def test_the_start_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="start_timeout_seconds must be positive"):
        TaskDefinition("Bad", queue="q", request=Req, start_timeout_seconds=0)
