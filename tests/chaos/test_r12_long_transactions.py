"""R12: two writers append many events in long transactions while the projector tails.

Positions come from a sequence, so a long transaction commits low positions after short ones
committed higher ones. The projector must skip nothing (log - projected = 0 once everything
committed), and it must keep projecting the short transactions' events while the long ones
are open (issue 8, defect 1: statuses froze while any transaction in the cluster was open).
"""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest

from localrun import local_payload_cipher
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.pg_store import PostgresEventStore, open_pool
from tasksaga.adapters.wire import Envelope
from tasksaga.core import events as ev
from tests.chaos.harness import chaos_system, figure, pick

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

EVENTS_PER_STREAM = 10


def _stream(task_id: str) -> list[Envelope]:
    now = int(time.time() * 1000)
    payloads: list[object] = [ev.TaskSubmitted(task_id, "ChaosR12", "{}", None, None, now, None)]
    payloads += [ev.CancellationRequested(f"r12 {i}", now) for i in range(EVENTS_PER_STREAM - 1)]
    return [Envelope(payload=p, message_id=f"{task_id}:{v}", task_id=task_id,
                     correlation_id=task_id, causation_id=None, occurred_at_ms=now,
                     task_type="ChaosR12", version=v)
            for v, p in enumerate(payloads, start=1)]


def test_projector_skips_nothing_behind_long_transactions_and_keeps_up_meanwhile(
    stack_env: dict[str, str], database_url: str,
) -> None:
    per_writer = pick(reduced=4_000, full=100_000)
    transactions = pick(reduced=1, full=6)
    # Each transaction stays open at least this long: longer than the status lag allowed.
    hold_s = pick(reduced=15, full=30)
    streams_per_tx = per_writer // transactions // EVENTS_PER_STREAM
    written: list[str] = []
    lag_s: list[float] = []
    lock = threading.Lock()
    codec = AvroCodec(cipher=local_payload_cipher())

    def writer() -> None:
        pool = open_pool(database_url, max_size=1, name="chaos-r12")
        store = PostgresEventStore(pool, codec)
        try:
            for _ in range(transactions):
                ids = [f"r12-{uuid.uuid4()}" for _ in range(streams_per_tx)]
                opened = time.monotonic()
                with store.transaction() as tx:
                    for task_id in ids:
                        tx.append(task_id, 0, _stream(task_id))
                    time.sleep(max(hold_s - (time.monotonic() - opened), 0.0))
                with lock:
                    written.extend(ids)
        finally:
            pool.close()

    with chaos_system(stack_env) as chaos:
        threads = [threading.Thread(target=writer, name=f"r12-writer-{i}") for i in (0, 1)]
        for thread in threads:
            thread.start()
        # Short transactions meanwhile: real tasks, whose status must keep moving.
        while any(t.is_alive() for t in threads):
            submitted = time.monotonic()
            task_id = chaos.submit(sleep_ms=0)
            assert task_id is not None
            try:
                chaos.wait_terminal([task_id], timeout_s=60)
            except AssertionError:
                lag_s.append(float("inf"))
                break
            lag_s.append(time.monotonic() - submitted)
        for thread in threads:
            thread.join()
        behind = _wait_projected(database_url, written, timeout_s=120)

    logged = len(written) * EVENTS_PER_STREAM
    figure("R12", events=logged, transactions=2 * transactions, hold_s=hold_s,
           log_minus_projected=behind, short_tasks=len(lag_s),
           status_lag_max_s=max(lag_s, default=float("nan")))
    assert behind == 0
    assert max(lag_s) < 10.0, (f"a short task took {max(lag_s):.1f} s to show terminal while "
                               "long transactions were open: projections froze")


def _wait_projected(database_url: str, streams: list[str], timeout_s: float) -> int:
    """Events of the streams not (yet) in the projection's audit entries, after waiting."""
    deadline = time.monotonic() + timeout_s
    behind = -1
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            logged = conn.execute("SELECT count(*) FROM events WHERE stream_id = ANY(%s)",
                                  (streams,)).fetchone()
            projected = conn.execute(
                "SELECT count(*) FROM audit_entries WHERE task_id = ANY(%s)",
                (streams,)).fetchone()
            assert logged is not None and projected is not None
            behind = int(logged[0]) - int(projected[0])
            if behind == 0:
                return 0
            time.sleep(1.0)
    return behind
