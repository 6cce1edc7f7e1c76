"""A rebuild (COPY for the streams it writes first, the collector paused) produces exactly the
projections the live projector produced event by event, and those of the former rebuild
(upserts only), in one process or several (each a partition of the streams), and with a live
projector running beside them: on every golden history (tests/fixtures/histories), each its
own stream."""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import ConnectionPool

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.parallel_rebuild import RebuildWorkerFailed, project_in_parallel
from tasksaga.adapters.pg_store import PostgresEventStore, open_pool
from tasksaga.adapters.projections import PROJECTION_TABLES, REBUILD_BATCH, Projector
from tasksaga.adapters.replay import rebuild
from tasksaga.adapters.wire import Envelope
from tasksaga.core import events as ev
from tests.integration.conftest import fresh_database

pytestmark = pytest.mark.integration

HISTORIES = sorted((Path(__file__).parents[1] / "fixtures" / "histories").rglob("*.json"))
ORDER = {"task_status": "task_id", "step_records": "task_id, step",
         "condition_snapshots": "task_id, step", "audit_entries": "position"}


def golden_streams(codec: AvroCodec) -> dict[str, list[list[Envelope]]]:
    """Each golden history's decisions (the events of each, decoded), under a task id of
    its own (the recordings reuse ids)."""
    streams: dict[str, list[list[Envelope]]] = {}
    for number, path in enumerate(HISTORIES):
        task_id = f"golden-{number:03d}-{path.stem}"
        history = json.loads(path.read_text())
        version = 0
        for decision in history["decisions"]:
            batch = []
            for raw in decision["events"]:
                envelope = codec.decode(base64.b64decode(raw))
                version += 1
                payload = envelope.payload
                if isinstance(payload, ev.TaskSubmitted):
                    payload = dataclasses.replace(payload, task_id=task_id)
                batch.append(dataclasses.replace(
                    envelope, payload=payload, task_id=task_id, version=version,
                    message_id=f"{task_id}:{version}", correlation_id=task_id))
            if batch:
                streams.setdefault(task_id, []).append(batch)
    return streams


def snapshot(pool: ConnectionPool) -> dict[str, list[tuple[Any, ...]]]:
    with pool.connection() as conn:
        return {table: conn.execute(f"SELECT * FROM {table} ORDER BY {ORDER[table]}").fetchall()
                for table in PROJECTION_TABLES}


@pytest.fixture(scope="module")
def golden_log(stack_env: dict[str, str]) -> Iterator[tuple[str, dict[str, list[Any]]]]:
    """A database holding every golden stream, appended decision by decision (round robin
    over the streams) with the live projector catching up in small batches in between, so
    streams are projected in pieces; yields it with the projections the live path made."""
    codec = AvroCodec()
    with fresh_database(stack_env, "tasksaga_rebuild") as url:
        pool = open_pool(url, max_size=2, name="rebuild-test")
        try:
            store, live = PostgresEventStore(pool, codec), Projector(pool, codec)
            pending = {task: list(batches) for task, batches in golden_streams(codec).items()}
            versions = dict.fromkeys(pending, 0)
            while any(pending.values()):
                for task_id, batches in pending.items():
                    if batches:
                        batch = batches.pop(0)
                        with store.transaction() as tx:
                            tx.append(task_id, versions[task_id], batch)
                        versions[task_id] += len(batch)
                live.catch_up(batch_size=5)
            live.catch_up_fully(batch_size=5)
            assert live.lag().events == 0
            projected = snapshot(pool)
            assert len(projected["task_status"]) == len(HISTORIES)
            yield url, projected
        finally:
            pool.close()


def rebuilt(url: str, batch_size: int, rebuilding: bool) -> dict[str, list[Any]]:
    pool = open_pool(url, max_size=2, name="rebuild-test")
    try:
        projector = Projector(pool, AvroCodec())
        projector.reset()
        projector.catch_up_fully(batch_size, rebuilding=rebuilding)
        return snapshot(pool)
    finally:
        pool.close()


@pytest.mark.parametrize("batch_size", [REBUILD_BATCH, 7, 1])
def test_a_rebuild_writes_what_the_live_projector_wrote(
        golden_log: tuple[str, dict[str, list[Any]]], batch_size: int) -> None:
    """Batches of 7 and 1 cut streams: their later parts are upserted, not copied."""
    url, live = golden_log
    assert rebuilt(url, batch_size, rebuilding=True) == live


def test_the_former_rebuild_writes_the_same(golden_log: tuple[str, dict[str, list[Any]]]) -> None:
    url, live = golden_log
    assert rebuilt(url, REBUILD_BATCH, rebuilding=False) == live


@pytest.mark.parametrize("workers", [1, 3])
def test_the_replay_tool_rebuilds_the_same(golden_log: tuple[str, dict[str, list[Any]]],
                                           workers: int) -> None:
    """Three processes for a few dozen streams: each partition holds some of them."""
    url, live = golden_log
    count, _seconds = rebuild(url, AvroCodec(), workers=workers)
    assert count == sum(row[3] for row in live["task_status"])  # every event (the versions)
    pool = open_pool(url, max_size=1, name="rebuild-test")
    try:
        assert snapshot(pool) == live
    finally:
        pool.close()


def test_a_row_that_exists_already_is_upserted_not_refused(
        golden_log: tuple[str, dict[str, list[Any]]]) -> None:
    """A step row written by hand between the reset and the rebuild makes the COPY fail:
    the batch goes back to its savepoint and upserts, and the rebuild still matches."""
    url, live = golden_log
    pool = open_pool(url, max_size=2, name="rebuild-test")
    try:
        projector = Projector(pool, AvroCodec())
        projector.reset()
        task_id, step = live["step_records"][0][:2]
        with pool.connection() as conn:
            conn.execute("INSERT INTO step_records (task_id, step, status, updated_at)"
                         " VALUES (%s, %s, 'BOGUS', now())", (task_id, step))
        projector.catch_up_fully(REBUILD_BATCH, rebuilding=True)
        assert snapshot(pool) == live
    finally:
        pool.close()


# A live projector in a process of its own, taking batches of 3 until stopped (the services'
# projector, as it keeps running during a rebuild).
_LIVE_PROJECTOR = """
import sys, time
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.pg_store import open_pool
from tasksaga.adapters.projections import Projector
pool = open_pool(sys.argv[1], max_size=1, name="live-beside-rebuild")
projector = Projector(pool, AvroCodec())
print("ready", flush=True)
while True:
    projector.catch_up(batch_size=3)
    time.sleep(0.001)
"""


def test_a_live_projector_beside_a_parallel_rebuild_changes_no_row(
        golden_log: tuple[str, dict[str, list[Any]]]) -> None:
    """Its batches (the lock held exclusively) fall between the rebuild processes' (held
    shared); whatever each projects, every row is written once and the tables match."""
    url, live = golden_log
    pool = open_pool(url, max_size=1, name="rebuild-test")
    try:
        Projector(pool, AvroCodec()).reset()
        beside = subprocess.Popen([sys.executable, "-c", _LIVE_PROJECTOR, url],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert beside.stdout is not None and beside.stdout.readline().strip() == "ready"
            projected = project_in_parallel(url, AvroCodec(), workers=2, batch_size=2)
        finally:
            beside.kill()
            beside.wait()
        Projector(pool, AvroCodec()).catch_up_fully()  # what the live one left, if anything
        assert projected <= sum(row[3] for row in live["task_status"])
        assert snapshot(pool) == live
    finally:
        pool.close()


class _FailingCodec(AvroCodec):
    def decode(self, data: bytes | None) -> Any:
        raise RuntimeError("disk on fire")


def test_a_failed_rebuild_process_fails_the_rebuild_naming_its_partition(
        golden_log: tuple[str, dict[str, list[Any]]]) -> None:
    url, _live = golden_log
    pool = open_pool(url, max_size=1, name="rebuild-test")
    try:
        Projector(pool, AvroCodec()).reset()
    finally:
        pool.close()
    with pytest.raises(RebuildWorkerFailed,
                       match=r"partition 0 of 2: RuntimeError: disk on fire"):
        project_in_parallel(url, _FailingCodec(), workers=2)
