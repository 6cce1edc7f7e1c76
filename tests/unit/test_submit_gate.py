"""The API's submit gate trips on an outage, not on one partition failing over."""

from __future__ import annotations

import pytest

from tasksaga.api.dependencies import SubmitGate, SubmitUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_failed_send_with_brokers_reachable_keeps_accepting() -> None:
    gate = SubmitGate(open_s=5.0, trip_after=3, monotonic=Clock())
    gate.failed(brokers_down=False)
    gate.check()  # a leaderless partition refused one record: the others still take theirs
    gate.succeeded()
    gate.failed()
    gate.failed()
    gate.check()  # never three in a row


def test_failures_in_a_row_trip_the_gate_until_a_probe_succeeds() -> None:
    clock = Clock()
    gate = SubmitGate(open_s=5.0, trip_after=3, monotonic=clock)
    for _ in range(3):
        gate.failed()
    with pytest.raises(SubmitUnavailable) as refused:
        gate.check()
    assert refused.value.headers == {"Retry-After": "5"}
    clock.now += 5.0
    gate.check()  # this request probes the broker
    with pytest.raises(SubmitUnavailable):
        gate.check()  # the others still wait
    gate.succeeded()
    gate.check()


def test_a_failure_with_every_broker_unreachable_trips_at_once() -> None:
    gate = SubmitGate(open_s=5.0, trip_after=3, monotonic=Clock())
    gate.failed(brokers_down=True)
    with pytest.raises(SubmitUnavailable):
        gate.check()
