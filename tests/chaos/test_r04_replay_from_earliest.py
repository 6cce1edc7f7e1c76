"""R4: every consumer group starts again from the earliest offset, and every record consumed
so far is published a second time.

The orchestrator, worker and notifier are stopped, their groups deleted (so they resume from
the earliest offset), every record of the topics they consume is produced again, and they are
started. Everything is then consumed twice more; nothing may change: the same events, the
same projections, no new step run, effect or compensation.
"""

from __future__ import annotations

import hashlib
import signal

import psycopg
import pytest

from tasksaga.adapters.wire import Topics
from tests.chaos.harness import Chaos, chaos_system, figure, pick
from tests.chaos.kafka_tools import delete_groups, republish, wait_caught_up

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

CONSUMERS = ("orchestrator", "worker", "notifier")


def _state(chaos: Chaos, task_ids: list[str]) -> tuple[str, dict[str, int]]:
    """A hash of the tasks' log and projections, and the row counts of what they touch."""
    digest = hashlib.sha256()
    counts: dict[str, int] = {}
    with psycopg.connect(chaos.database_url, autocommit=True) as conn:
        for name, sql in (
            ("events", "SELECT stream_id, version, event_type, message_id FROM events"
                       " WHERE stream_id = ANY(%s) ORDER BY 1, 2"),
            ("task_status", "SELECT task_id, status, version, response_json FROM task_status"
                            " WHERE task_id = ANY(%s) ORDER BY 1"),
            ("step_records", "SELECT task_id, step, status, attempt FROM step_records"
                             " WHERE task_id = ANY(%s) ORDER BY 1, 2"),
            ("audit_entries", "SELECT task_id, version, event_type FROM audit_entries"
                              " WHERE task_id = ANY(%s) ORDER BY 1, 2"),
            ("chaos_ledger", "SELECT task_id, step, kind, attempt FROM chaos_ledger"
                             " WHERE task_id = ANY(%s) ORDER BY id"),
            ("chaos_effects", "SELECT task_id, step, kind FROM chaos_effects"
                              " WHERE task_id = ANY(%s) ORDER BY 1, 2, 3"),
        ):
            rows = conn.execute(sql, (task_ids,)).fetchall()
            counts[name] = len(rows)
            digest.update(repr(rows).encode())
    return digest.hexdigest()[:16], counts


def test_consumers_reset_to_earliest_with_every_record_republished_change_nothing(
    stack_env: dict[str, str],
) -> None:
    tasks = pick(reduced=40, full=500)
    bootstrap = stack_env["TASKSAGA_KAFKA_BOOTSTRAP"]
    with chaos_system(stack_env) as chaos:
        ids = chaos.submit_many(tasks // 2, sleep_ms=0)
        ids += chaos.submit_many(tasks - tasks // 2, sleep_ms=0, fail_last=True)
        chaos.wait_terminal(ids, timeout_s=300)
        topics = Topics(chaos.prefix)
        groups = {
            f"{chaos.prefix}-orchestrator": [topics.task_commands, topics.step_results],
            f"{chaos.prefix}-worker-chaos": [topics.step_commands("chaos")],
            f"{chaos.prefix}-notifier": [topics.task_events],
        }
        assert wait_caught_up(bootstrap, groups, timeout_s=60) == 0
        before, counts_before = _state(chaos, ids)

        for name in CONSUMERS:
            chaos.services.kill(name, signal.SIGTERM)
        delete_groups(bootstrap, list(groups))
        republished = republish(bootstrap, [t for ts in groups.values() for t in ts])
        for name in CONSUMERS:
            chaos.services.start(name)
        left = wait_caught_up(bootstrap, groups, timeout_s=pick(reduced=120, full=600))
        chaos.settle(ids, timeout_s=5)
        after, counts_after = _state(chaos, ids)

    new_rows = {k: counts_after[k] - counts_before[k] for k in counts_before
                if counts_after[k] != counts_before[k]}
    figure("R4", tasks=len(ids), republished=republished, lag_left=left,
           hash_before=before, hash_after=after, new_rows=sum(new_rows.values()),
           new_step_runs=new_rows.get("chaos_ledger", 0))
    assert left == 0
    assert new_rows == {}, f"rows added by consuming everything again: {new_rows}"
    assert after == before
