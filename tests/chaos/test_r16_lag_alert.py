"""R16: the notifier stalls (SIGSTOP) for longer than its topic's retention. The orchestrator's
consumer lag watch must alert (a warning log line, and the backlog-age gauge) before the
retention can delete the first task event the notifier has not consumed.

The earliest moment of loss is the oldest unconsumed record's timestamp plus retention.ms; the
lead time is how long before that moment the alert appeared.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
)

from tasksaga.adapters.lag_watch import LagWatch
from tasksaga.adapters.wire import Topics
from tests.chaos.harness import chaos_system, figure, pick

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]


def _set_retention(bootstrap: str, topic: str, retention_ms: int) -> None:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", str(retention_ms),
                    incremental_operation=AlterConfigOpType.SET)])
    admin = AdminClient({"bootstrap.servers": bootstrap})  # alive until the futures resolve
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def test_a_stalled_notifier_is_alerted_before_retention_can_delete_its_events(
    stack_env: dict[str, str],
) -> None:
    retention_ms = pick(reduced=20_000, full=120_000)
    bootstrap = stack_env["TASKSAGA_KAFKA_BOOTSTRAP"]
    with chaos_system(stack_env, TASKSAGA_LAG_WATCH_INTERVAL_S="1") as chaos:
        warm = chaos.submit()
        assert warm is not None
        chaos.wait_terminal([warm], timeout_s=60)
        topic = Topics(chaos.prefix).task_events
        group = f"{chaos.prefix}-notifier"
        _set_retention(bootstrap, topic, retention_ms)
        notifier = chaos.services.processes["notifier"]
        os.killpg(notifier.pid, signal.SIGSTOP)
        stalled_at = time.time()
        try:
            ids = chaos.submit_many(pick(reduced=5, full=50))
            chaos.wait_terminal(ids, timeout_s=60)
            watch = LagWatch(bootstrap, {group: [topic]})
            backlog = [b for b in watch.measure() if b.lag and b.oldest_unconsumed_ms]
            watch.close()
            assert backlog, "the stalled notifier should have unconsumed task events"
            loss_at = min(b.oldest_unconsumed_ms or 0 for b in backlog) / 1000 \
                + retention_ms / 1000
            alert_at = None
            while time.time() < loss_at + 5:
                if f"consumer lag alert: group {group}" in chaos.services.log_tail(
                        "orchestrator", 400):
                    alert_at = time.time()
                    break
                time.sleep(0.2)
        finally:
            os.killpg(notifier.pid, signal.SIGCONT)
    assert alert_at is not None, "no lag alert before the retention could delete events"
    lead_s = loss_at - alert_at
    print(figure("R16", retention_s=retention_ms / 1000, alert_after_stall_s=alert_at - stalled_at,
                 lead_time_s=lead_s, unconsumed=sum(b.lag for b in backlog)))
    assert lead_s > 0
