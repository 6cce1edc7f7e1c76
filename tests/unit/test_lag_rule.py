"""The lag alert fires once a group's oldest unconsumed record is older than a fraction of its
topic's retention, and never for a group that is caught up or a topic kept forever."""

from __future__ import annotations

from tasksaga.adapters.lag_watch import PartitionBacklog, lag_alerts

HOUR_MS = 3_600_000


def backlog(committed: int, end: int, oldest_ms: int | None, retention_ms: int | None,
            start: int = 0) -> PartitionBacklog:
    return PartitionBacklog("g", "t", 0, committed, start, end, oldest_ms, retention_ms)


def test_an_alert_fires_at_the_configured_fraction_of_the_retention() -> None:
    now = 10 * HOUR_MS
    young = backlog(5, 9, now - HOUR_MS + 1, 2 * HOUR_MS)
    old = backlog(5, 9, now - HOUR_MS, 2 * HOUR_MS)
    assert lag_alerts([young], now, 0.5) == []
    [alert] = lag_alerts([old], now, 0.5)
    assert alert.lag == 4 and alert.loss_in_s == 3600
    assert "data is lost in about 3600 s" in str(alert)


def test_no_alert_for_a_caught_up_group_or_a_topic_kept_forever() -> None:
    now = 10 * HOUR_MS
    assert lag_alerts([backlog(9, 9, None, HOUR_MS)], now, 0.5) == []
    assert lag_alerts([backlog(1, 9, 0, -1)], now, 0.5) == []


def test_a_group_that_never_committed_counts_from_the_log_start() -> None:
    assert backlog(-1, 9, 0, HOUR_MS, start=3).lag == 6
