"""A batch's start (lock_and_claim, one database call) reads each stream's version only once
its lock is held: a batch that waited for another to commit sees that commit's events. The
batch functions are planned once per session, and their appends probe `streams` by index."""

from __future__ import annotations

import threading
import time

from psycopg_pool import ConnectionPool

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.pg_store import PostgresEventStore
from tasksaga.adapters.pg_transaction import StoreTransaction
from tests.integration.conftest import completed_step, new_task_id, submitted


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


def test_a_batch_append_finds_its_stream_through_the_index_in_the_order_decided(
    schema_pool: ConnectionPool, codec: AvroCodec,
) -> None:
    # With the batch's events estimated at 100 rows, a hash join over a sequential scan of
    # `streams` looked cheaper than 100 index probes up to ~40,000 streams, and it gave a
    # stream's events of one batch their log positions in reverse (025).
    with schema_pool.connection() as conn:
        conn.execute("INSERT INTO streams (stream_id, opened_at)"
                     " SELECT 'filler-' || g, now() FROM generate_series(1, 20000) g")
        conn.execute("ANALYZE streams")
    task_id = new_task_id()
    with schema_pool.connection() as conn, conn.transaction():
        first = StoreTransaction(conn, codec)
        first.append(task_id, 0, [submitted(task_id)])
        first.flush()
    with schema_pool.connection() as conn, conn.transaction():
        second = StoreTransaction(conn, codec)
        second.append(task_id, 1, [completed_step(task_id, 2, "First"),
                                   completed_step(task_id, 3, "Second")])
        second.flush()
        row = conn.execute("SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables"
                           " WHERE relid = 'streams'::regclass").fetchone()
        versions = [v for (v,) in conn.execute(
            "SELECT version FROM events WHERE stream_id = %s ORDER BY position", (task_id,))]
    assert row is not None
    seq_scans, index_scans = row
    assert seq_scans == 0 and index_scans > 0
    assert versions == [1, 2, 3]  # the log's order is the order decided
