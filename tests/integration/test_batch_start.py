"""A batch's start (lock_and_claim, one database call) reads each stream's version only once
its lock is held: a batch that waited for another to commit sees that commit's events."""

from __future__ import annotations

import threading
import time

from psycopg_pool import ConnectionPool

from tasksaga.adapters.pg_store import PostgresEventStore
from tests.integration.conftest import new_task_id, submitted


def test_a_batch_that_waited_for_a_stream_lock_reads_the_version_its_holder_committed(
    store: PostgresEventStore,
) -> None:
    task_id = new_task_id()
    seen: dict[str, int] = {}
    holding = threading.Event()

    def second_batch() -> None:
        holding.wait(10)
        with store.transaction() as tx:
            versions, claimed = tx.lock_and_claim([task_id], "batch-test", [f"{task_id}:b"])
            seen.update(versions)
            assert claimed == {f"{task_id}:b"}

    waiter = threading.Thread(target=second_batch)
    waiter.start()
    with store.transaction() as tx:
        assert tx.lock_and_claim([task_id], "batch-test", [f"{task_id}:a"]) == (
            {task_id: 0}, {f"{task_id}:a"})
        tx.append(task_id, 0, [submitted(task_id)])
        holding.set()
        time.sleep(0.5)  # the second batch is now waiting for the lock
        assert seen == {}
    waiter.join(10)
    assert seen == {task_id: 1}  # not 0: its read came after the lock, not before


def test_the_batch_functions_plan_their_statements_once_per_session(
    pool: ConnectionPool,
) -> None:
    # A custom plan per call re-plans the version lookup over every partition of the event
    # log for nothing (025): the statements' estimates never depend on the values passed.
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT proname, proconfig FROM pg_proc WHERE proname = ANY(%s)",
            (["tasksaga_begin_batch", "tasksaga_write_batch"],)).fetchall()
    assert {name: config for name, config in rows} == {
        "tasksaga_begin_batch": ["plan_cache_mode=force_generic_plan"],
        "tasksaga_write_batch": ["plan_cache_mode=force_generic_plan"],
    }
