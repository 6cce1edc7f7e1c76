"""Projections keep up while another connection holds a transaction open (a report, a
backup, a stuck session): the projector waits for nobody but the writers of each stream.

Reading below the cluster-wide horizon (pg_snapshot_xmin), the former mechanism, froze every
status for as long as any transaction anywhere stayed open. Prints the lag figures.
"""

from __future__ import annotations

import time

import psycopg
from psycopg_pool import ConnectionPool

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.pg_store import PostgresEventStore
from tasksaga.adapters.projections import Projector, projection_lag
from tests.integration.conftest import completed_step, new_task_id, submitted
from tests.integration.test_projection_gap import project_until, projector_lock

TASKS = 200


def test_projections_advance_while_another_connection_holds_a_long_transaction(
    database_url: str, pool: ConnectionPool, codec: AvroCodec, store: PostgresEventStore,
) -> None:
    projector = Projector(pool, codec)
    projector.catch_up_fully()
    # The long transaction: it has a transaction id (so it holds back pg_snapshot_xmin) and
    # stays open across everything below, as a 10-minute report would.
    report = psycopg.connect(database_url)
    try:
        report.execute("BEGIN")
        report.execute("SELECT txid_current()")
        task_ids = [new_task_id() for _ in range(TASKS)]
        started = time.perf_counter()
        with projector_lock(database_url):  # no projector anywhere: measure the lag
            for task_id in task_ids:
                with store.transaction() as tx:
                    tx.append(task_id, 0, [submitted(task_id)])
            behind = projection_lag(pool)
        assert behind.events >= TASKS, f"the appended events count as lag: {behind}"
        project_until(projector, pool, dict.fromkeys(task_ids, 1))
        caught_up_s = time.perf_counter() - started

        # And the streams keep moving, still under the open transaction.
        for task_id in task_ids:
            with store.transaction() as tx:
                tx.append(task_id, 1, [completed_step(task_id, 2)])
        project_until(projector, pool, dict.fromkeys(task_ids, 2))
        after = projection_lag(pool)
        held_s = report.execute("SELECT extract(epoch FROM clock_timestamp() - xact_start)"
                                " FROM pg_stat_activity WHERE pid = pg_backend_pid()").fetchone()
        assert held_s is not None
    finally:
        report.rollback()
        report.close()
    print(f"\nlong transaction held {float(held_s[0]):.1f} s: lag before catch-up {behind};"
          f" {TASKS} appends projected {caught_up_s:.2f} s after the first; lag after {after}")
    assert after.events < TASKS, f"projections fell behind: {after}"
