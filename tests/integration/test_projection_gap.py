"""A projection tailing the log never skips an event committed late by a concurrent
transaction (the bigserial gap problem), and does not wait for it to project the others."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from tasksaga.adapters import projections
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.payload_crypto import PayloadCipher, column_context
from tasksaga.adapters.pg_store import PostgresEventStore
from tasksaga.adapters.projections import Projector, projection_lag
from tests.integration.conftest import OPEN_STREAM_BY_HAND, new_task_id, submitted


def project_until(
    projector: Projector, pool: ConnectionPool, versions: dict[str, int], timeout_s: float = 60,
) -> None:
    """Project until these tasks' task_status rows reach these versions. Other processes
    sharing the database (orchestrators of other tests) run projectors too, and one projects
    at a time: a catch-up that finds the lock taken projects nothing, the other one does."""
    deadline = time.monotonic() + timeout_s
    while True:
        projector.catch_up_fully()
        with pool.connection() as conn:
            rows = conn.execute("SELECT task_id, version FROM task_status WHERE task_id = ANY(%s)",
                                (list(versions),)).fetchall()
        if {str(r[0]): int(r[1]) for r in rows} == versions:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not projected within {timeout_s:g} s: {rows} != {versions}")
        time.sleep(0.1)


@contextlib.contextmanager
def projector_lock(database_url: str) -> Iterator[None]:
    """Keep every projector out (they only try the lock), so lag can be measured."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (projections._LOCK_KEY,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (projections._LOCK_KEY,))


def _status(pool: ConnectionPool, task_id: str) -> str | None:
    with pool.connection() as conn:
        row = conn.execute("SELECT status FROM task_status WHERE task_id = %s",
                           (task_id,)).fetchone()
    return None if row is None else str(row[0])


def test_an_event_committed_after_a_higher_position_is_still_projected(
    database_url: str, pool: ConnectionPool, codec: AvroCodec, store: PostgresEventStore,
) -> None:
    projector = Projector(pool, codec)
    projector.catch_up_fully()
    early, late = new_task_id(), new_task_id()

    slow = psycopg.connect(database_url)  # takes the lower position, commits last
    slow_tx = slow.transaction()
    slow_tx.__enter__()
    early_row = slow.execute(
        OPEN_STREAM_BY_HAND + " RETURNING position",
        {"task": early, "message": f"{early}:1", "payload": codec.encode(submitted(early))},
    ).fetchone()
    with store.transaction() as tx:  # takes a higher position and commits first
        tx.append(late, 0, [submitted(late)])
    with pool.connection() as conn:
        late_row = conn.execute("SELECT position FROM events WHERE stream_id = %s",
                                (late,)).fetchone()
    # A reader following positions alone would now pass the gap for good: the late commit
    # holds a position below one that is already visible.
    assert early_row is not None and late_row is not None
    assert early_row[0] < late_row[0]

    project_until(projector, pool, {late: 1})  # a committed stream waits for nobody
    assert _status(pool, early) is None, "an uncommitted event is invisible"

    slow_tx.__exit__(None, None, None)  # commit
    slow.close()
    project_until(projector, pool, {early: 1, late: 1})
    assert _status(pool, early) == _status(pool, late) == "Running"


def test_a_rebuild_from_the_log_gives_identical_tables(
    schema_pool: ConnectionPool, codec: AvroCodec,
) -> None:
    """In a schema of its own: a rebuild replays the whole log, and the shared database holds
    every other test's tasks (minutes of replay on a long-used machine)."""
    from tests.integration.conftest import completed_step

    pool = schema_pool
    store = PostgresEventStore(pool, codec)
    task_ids = [new_task_id() for _ in range(3)]
    for task_id in task_ids:
        with store.transaction() as tx:
            tx.append(task_id, 0, [submitted(task_id), completed_step(task_id, 2)])
    projector = Projector(pool, codec)
    project_until(projector, pool, dict.fromkeys(task_ids, 2))
    before = _snapshot(pool, task_ids, codec.cipher)
    assert len(before["task_status"]) == 3 and len(before["audit_entries"]) == 6
    projector.reset()
    # No check that the tables are empty now: a projector of another process sharing the
    # database may already be rebuilding them.
    project_until(Projector(pool, codec), pool, dict.fromkeys(task_ids, 2), timeout_s=300)
    assert _snapshot(pool, task_ids, codec.cipher) == before


def _snapshot(
    pool: ConnectionPool, task_ids: list[str], cipher: PayloadCipher,
) -> dict[str, list[dict[str, Any]]]:
    """The projection rows of these tasks (other tests may be writing other tasks), sealed
    payload columns opened: a rebuild seals them again under fresh nonces."""
    tables = {
        "task_status": "task_id",
        "step_records": "task_id, step",
        "condition_snapshots": "task_id, step",
        "audit_entries": "position",
    }
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        return {
            t: [_opened(t, row, cipher) for row in cur.execute(
                f"SELECT * FROM {t} WHERE task_id = ANY(%s) ORDER BY {o}", (task_ids,))]
            for t, o in tables.items()
        }


def _opened(table: str, row: dict[str, Any], cipher: PayloadCipher) -> dict[str, Any]:
    for column in ("request_json", "response_json", "data_json"):
        if row.get(column) is not None:
            step = row["step"] if table == "step_records" else ""
            row[column] = cipher.open(
                row[column], column_context(row["task_id"], f"{table}.{column}", step))
    return row


def test_an_unreadable_stream_does_not_halt_the_others(
    pool: ConnectionPool, codec: AvroCodec, store: PostgresEventStore,
) -> None:
    """An event that cannot be decoded (corrupt bytes, a key missing from the ring) leaves its
    stream queued and counted as lag; every other stream is still projected."""
    projector = Projector(pool, codec)
    projector.catch_up_fully()
    broken, healthy = new_task_id(), new_task_id()
    with pool.connection() as conn:
        conn.execute(OPEN_STREAM_BY_HAND, {"task": broken, "message": f"{broken}:1",
                                           "payload": b"\xc3\x01not-an-event"})
    with store.transaction() as tx:
        tx.append(healthy, 0, [submitted(healthy)])
    project_until(projector, pool, {healthy: 1})
    assert _status(pool, broken) is None
    with pool.connection() as conn:
        queued = conn.execute("SELECT count(*) FROM projection_queue WHERE stream_id = %s",
                              (broken,)).fetchone()
    assert queued is not None and queued[0] == 1, "the unreadable stream stays queued"
    assert projection_lag(pool).events >= 1
    with pool.connection() as conn:  # the shared database's lag must not count it forever
        conn.execute("DELETE FROM projection_queue WHERE stream_id = %s", (broken,))
