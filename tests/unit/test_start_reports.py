"""Start reports: sent for a step still running after the delay, never for one that finished
first, never after the step's result, and at once with no delay."""

from __future__ import annotations

import threading
import time

import pytest

from tasksaga.worker.start_reports import StartReports


def now_ms() -> int:
    return int(time.monotonic() * 1000)


def test_a_step_that_finishes_within_the_delay_sends_no_start_report() -> None:
    reports = StartReports(10_000, now_ms)
    sent: list[str] = []
    reports.started("quick", lambda: sent.append("quick"))
    reports.finished("quick")
    assert sent == [] and reports.sent == 0


def test_a_step_still_running_after_the_delay_sends_its_report_once() -> None:
    reports = StartReports(20, now_ms)
    sent = threading.Event()
    calls: list[str] = []

    def send() -> None:
        calls.append("long")
        sent.set()

    reports.started("long", send)
    assert sent.wait(5)
    reports.finished("long")  # its result follows the report; nothing more is sent
    time.sleep(0.05)
    assert calls == ["long"] and reports.sent == 1


def test_without_a_delay_the_report_is_sent_at_once() -> None:
    reports = StartReports(0, now_ms)
    sent: list[str] = []
    reports.started("k", lambda: sent.append("k"))
    assert sent == ["k"]


def test_a_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        StartReports(-1, now_ms)
