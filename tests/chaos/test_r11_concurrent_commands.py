"""R11: twenty concurrent writers of one task: one write per version, nothing lost.

Two levels: twenty threads of the event store itself, each taking the stream lock and
appending at the version it read (the orchestrator's pattern: a writer holding the lock must
read the current version, so it never conflicts); and twenty concurrent cancel requests for
one running task through the API (one cancellation, one compensation, a sound log).
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from localrun import local_payload_cipher
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.pg_store import ConcurrencyConflict, PostgresEventStore, open_pool
from tasksaga.adapters.wire import Envelope
from tasksaga.core import events as ev
from tests.chaos.harness import chaos_system, figure

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

WRITERS = 20


def _envelope(task_id: str, version: int, payload: object) -> Envelope:
    return Envelope(payload=payload, message_id=f"{task_id}:{version}", task_id=task_id,
                    correlation_id=task_id, causation_id=None,
                    occurred_at_ms=int(time.time() * 1000), task_type="ChaosR11",
                    version=version)


def test_twenty_writers_of_one_stream_write_once_per_version_without_conflicts(
    database_url: str,
) -> None:
    codec = AvroCodec(cipher=local_payload_cipher())
    pool = open_pool(database_url, max_size=WRITERS, name="chaos-r11")
    store = PostgresEventStore(pool, codec)
    task_id = f"r11-{uuid.uuid4()}"
    with store.transaction() as tx:
        tx.lock_stream(task_id)
        tx.append(task_id, 0, [_envelope(task_id, 1, ev.TaskSubmitted(
            task_id, "ChaosR11", "{}", None, None, int(time.time() * 1000), None))])
    conflicts = 0
    lock = threading.Lock()
    start = threading.Barrier(WRITERS)

    def write(index: int) -> int:
        nonlocal conflicts
        start.wait()
        for attempt in range(1, 50):
            try:
                with store.transaction() as tx:
                    version = tx.lock_stream(task_id)
                    assert version is not None
                    time.sleep(0.005)  # the decision takes a moment, as decide does
                    tx.append(task_id, version, [_envelope(task_id, version + 1,
                              ev.CancellationRequested(f"writer {index}", 0))])
                return attempt
            except ConcurrencyConflict:
                with lock:
                    conflicts += 1
        raise AssertionError(f"writer {index} never appended")

    try:
        with ThreadPoolExecutor(max_workers=WRITERS) as threads:
            attempts = list(threads.map(write, range(WRITERS)))
        with pool.connection() as conn:
            rows = conn.execute("SELECT version, payload FROM events WHERE stream_id = %s"
                                " ORDER BY version", (task_id,)).fetchall()
    finally:
        pool.close()
    versions = [r[0] for r in rows]
    writers = sorted(codec.decode(bytes(r[1])).payload.reason for r in rows[1:])
    figure("R11-store", writers=WRITERS, versions=len(versions), conflicts=conflicts,
           retries=sum(a - 1 for a in attempts))
    assert versions == list(range(1, WRITERS + 2)), "one write per version, no gap"
    assert writers == sorted(f"writer {i}" for i in range(WRITERS)), "each writer once"
    assert conflicts == 0, (f"{conflicts} appends conflicted although their writer held the "
                            "stream lock: the version was read stale")


def test_twenty_concurrent_cancels_of_one_task_cancel_it_once(
    stack_env: dict[str, str],
) -> None:
    with chaos_system(stack_env) as chaos:
        task_id = chaos.submit(sleep_ms=4000)  # still running when the cancels land
        assert task_id is not None
        deadline = time.monotonic() + 30
        while chaos.statuses([task_id]).get(task_id) != "Running":
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.1)
        go = threading.Barrier(WRITERS)

        def cancel(_: int) -> int:
            with chaos.client() as client:
                go.wait()
                return client.post(f"/tasks/{task_id}/cancel").status_code

        with ThreadPoolExecutor(max_workers=WRITERS) as threads:
            codes = list(threads.map(cancel, range(WRITERS)))
        status = chaos.wait_terminal([task_id], timeout_s=60)[task_id]
        requested = chaos.events_of_type([task_id], "CancellationRequested")
        cancelled = chaos.events_of_type([task_id], "TaskCancelled")
        log = chaos.log_problems([task_id])
        ledger = chaos.ledger([task_id])
    figure("R11-api", requests=WRITERS, accepted=codes.count(202),
           refused_409=codes.count(409), cancellation_events=requested,
           doubled_compensations=len(ledger.doubled_effects("compensate")))
    assert set(codes) <= {202, 409}, codes
    assert status == "Cancelled"
    assert (requested, cancelled) == (1, 1)
    assert log == []
    assert ledger.doubled_effects("compensate") == []
