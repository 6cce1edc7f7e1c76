"""Replay: rebuild every projection from a log of 1M events, and fold one task's stream.

The log lives in its own database (``tasksaga_bench_replay``, migrations applied), generated
once and kept: realistic streams produced by the saga core itself (``decide`` on the bench
task definitions, the way the orchestrator does), one template per shape, stamped per task with
its own id, request payload and times, Avro-encoded with the services' codec and written with
COPY in transactions of 10,000 events.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

import psycopg

from bench import bench_tasks
from bench.ours import database_url
from bench.workloads import WORKLOADS, payload
from localrun import drop_database
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.migrations import apply_migrations
from tasksaga.adapters.parallel_rebuild import DEFAULT_WORKERS, project_in_parallel
from tasksaga.adapters.pg_store import PostgresEventStore, open_pool
from tasksaga.adapters.projections import Projector, collector_paused
from tasksaga.adapters.wire import Envelope
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.decide import decide
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.state import TaskState, evolve, fold

REPLAY_DB = "tasksaga_bench_replay"
GENERATOR_VERSION = "2"
SHAPES: tuple[tuple[str, bool], ...] = (  # (workload, fails): a mix close to the sweep's
    ("linear3", False), ("linear10", False), ("parallel10", False),
    ("linear10", False), ("linear3", False), ("parallel10", False),
    ("linear10", False), ("linear3", False), ("parallel10", False), ("linear10", True),
)


def simulate(definition: TaskDefinition, fail_last: bool, task_id: str = "T") -> list[Any]:
    """The events of one task as the orchestrator writes them, worker results simulated."""
    now = 1_700_000_000_000
    request = json.dumps({"payload": payload(1), "fail_last": fail_last})
    state = TaskState()
    events: list[Any] = []

    def apply(message: msg.Inbound) -> list[msg.Outbound]:
        nonlocal state, now
        now += 3
        decision = decide(definition, state, message, now, lambda: 0.5)
        for event in decision.events:
            state = evolve(state, event)
        events.extend(decision.events)
        return decision.commands

    pending = apply(msg.SubmitTask(task_id, definition.name, request, None, None, now, []))
    last = definition.steps[-1].name
    while pending:
        command = pending.pop(0)
        if isinstance(command, msg.ExecuteStep):
            if fail_last and command.step == last:
                result: msg.Inbound = msg.StepAttemptFailed(
                    task_id, command.step, command.attempt, "NonRetryableError", "on purpose",
                    False)
            else:
                data = json.dumps({"start": now / 1000, "end": now / 1000 + 0.0001})
                result = msg.StepSucceeded(task_id, command.step, command.attempt, data)
        elif isinstance(command, msg.CompensateStep):
            result = msg.CompensationSucceeded(task_id, command.step, command.attempt)
        else:
            continue
        pending.extend(apply(result))
    return events


def _stamp(event: Any, task_id: str, request_json: str) -> Any:
    if isinstance(event, ev.TaskSubmitted):
        return replace(event, task_id=task_id, request_json=request_json)
    return event


def generate(url: str, total_events: int, log: Callable[[str], None]) -> int:
    """Write about ``total_events`` events; returns the number written."""
    codec = AvroCodec()
    definitions = {d.name: d for d in (bench_tasks.BenchLinear3, bench_tasks.BenchLinear10,
                                       bench_tasks.BenchParallel10)}
    templates = [
        (WORKLOADS[key].task_type,
         simulate(definitions[WORKLOADS[key].task_type], fails))
        for key, fails in SHAPES
    ]
    written = 0
    started = time.perf_counter()

    def rows() -> Iterator[tuple[str, int, str, str, bytes]]:
        nonlocal written
        task = 0
        while written < total_events:
            task_type, template = templates[task % len(templates)]
            task_id = f"replay-{task:07d}"
            request_json = json.dumps({"payload": payload(task), "fail_last": False})
            at = 1_700_000_000_000 + task * 20
            opened = datetime.fromtimestamp((at + 1) / 1000, UTC)  # the stream's partition key
            for version, event in enumerate(template, start=1):
                envelope = Envelope(
                    payload=_stamp(event, task_id, request_json),
                    message_id=f"{task_id}:{version}", task_id=task_id,
                    correlation_id=task_id, causation_id=f"{task_id}:{version - 1}",
                    occurred_at_ms=at + version, task_type=task_type, version=version)
                yield (task_id, opened, version, type(event).__name__, envelope.message_id,
                       codec.encode(envelope))
                written += 1
            task += 1

    with psycopg.connect(url) as conn:
        batch: list[tuple[str, datetime, int, str, str, bytes]] = []
        for row in rows():
            batch.append(row)
            if len(batch) >= 10_000:
                _copy(conn, batch)
                batch = []
                if written % 200_000 < 10_000:
                    log(f"    generated {written:,} events "
                        f"({time.perf_counter() - started:.0f} s)")
        if batch:
            _copy(conn, batch)
    return written


def _copy(conn: psycopg.Connection,
          rows: list[tuple[str, datetime, int, str, str, bytes]]) -> None:
    """Rows as the store writes them: each stream's opening in ``streams`` (018), its events
    with that time as their partition key."""
    with conn.transaction(), conn.cursor() as cursor:
        with cursor.copy("COPY streams (stream_id, opened_at) FROM STDIN") as copy:
            for row in rows:
                if row[2] == 1:
                    copy.write_row(row[:2])
        with cursor.copy("COPY events (stream_id, stream_opened_at, version, event_type,"
                         " message_id, payload) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def ensure_log(base_url: str, total_events: int, log: Callable[[str], None]) -> str:
    """The replay database with ``total_events`` events (generated once, then reused).

    One database per size (the quick run's 50k next to the full run's 1M), so switching
    between them never regenerates a log.
    """
    name = REPLAY_DB if total_events >= 1_000_000 else f"{REPLAY_DB}_{total_events // 1000}k"
    url = database_url(base_url, name)
    with psycopg.connect(base_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    apply_migrations(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value text)")
        meta: dict[str, str] = dict(conn.execute("SELECT key, value FROM bench_meta").fetchall())
    if meta.get("events") == str(total_events) and meta.get("version") == GENERATOR_VERSION:
        log(f"  reusing the replay log of {total_events:,} events in {name}")
        return url
    log(f"  generating a replay log of {total_events:,} events in {name} (once)")
    drop_database(base_url, name)
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    apply_migrations(url)
    written = generate(url, total_events, log)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE events")
        conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value text)")
        conn.execute("INSERT INTO bench_meta VALUES ('events', %s), ('version', %s)"
                     " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                     (str(total_events), GENERATOR_VERSION))
    log(f"  wrote {written:,} events")
    return url


def _decode_fold(url: str, codec: AvroCodec, decode_events: int, paused: bool
                 ) -> dict[str, Any]:
    read_s = decode_s = fold_s = 0.0
    count = 0
    states: dict[str, TaskState] = {}
    with psycopg.connect(url) as conn, conn.cursor(name="replay") as cursor:
        cursor.itersize = 20_000
        cursor.execute("SELECT stream_id, payload FROM events ORDER BY position LIMIT %s",
                       (decode_events,))
        while True:
            # Paused around the read too, as a rebuild's batch is: else the collections it
            # saved come due in the fetch (its rows are new objects too).
            with collector_paused(paused):
                t0 = time.perf_counter()
                rows = cursor.fetchmany(20_000)
                t1 = time.perf_counter()
                read_s += t1 - t0
                if not rows:
                    break
                decoded = [(stream, codec.decode(bytes(raw)).payload) for stream, raw in rows]
                t2 = time.perf_counter()
                decode_s += t2 - t1
                # Each stream's run of events folded at once, as a replay folds a stream.
                for stream, run in groupby(decoded, key=itemgetter(0)):
                    states[stream] = fold([event for _, event in run], states.get(stream))
                fold_s += time.perf_counter() - t2
            count += len(rows)
    return {
        "events": count, "streams": len(states), "read_s": read_s, "decode_s": decode_s,
        "fold_s": fold_s,
        "decode_fold_events_per_s": count / (decode_s + fold_s),
        "with_read_events_per_s": count / (read_s + decode_s + fold_s),
        "decode_events_per_s": count / decode_s, "fold_events_per_s": count / fold_s,
    }


def measure(url: str, decode_events: int,
            log: Callable[[str], None]) -> dict[str, Any]:
    codec = AvroCodec()
    result: dict[str, Any] = {}
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT stream_id) FROM events").fetchone()
        assert row is not None
        result["log_events"], result["log_streams"] = int(row[0]), int(row[1])

    # 1. The core of replay: read, Avro-decode and fold every stream, one process, one core;
    # again with the cyclic collector paused per batch, as a rebuild runs (collector_paused):
    # that one three times, its median run kept (this machine's speed drifts by ~15% from
    # minute to minute), the three rates with it.
    result["decode_fold"] = _decode_fold(url, codec, decode_events, paused=False)
    runs = sorted((_decode_fold(url, codec, decode_events, paused=True) for _ in range(3)),
                  key=itemgetter("decode_fold_events_per_s"))
    result["decode_fold_collector_paused"] = {
        **runs[1], "runs_events_per_s": [r["decode_fold_events_per_s"] for r in runs]}
    for key, how in (("decode_fold", ""), ("decode_fold_collector_paused", ", collector paused")):
        done = result[key]
        log(f"  decode + fold{how}: {done['events']:,} events in "
            f"{done['decode_s'] + done['fold_s']:.1f} s ({done['decode_fold_events_per_s']:,.0f}"
            f" events/s; with the read {done['with_read_events_per_s']:,.0f}/s)")

    # 2. One task's stream, as the orchestrator loads it for every message it handles.
    pool = open_pool(url, max_size=2, name="bench-replay")
    try:
        store = PostgresEventStore(pool, codec)
        with psycopg.connect(url) as conn:
            picks = conn.execute(
                "SELECT stream_id, count(*) FROM events WHERE stream_id IN"
                " (SELECT stream_id FROM events WHERE version = 1 ORDER BY position LIMIT 10)"
                " GROUP BY stream_id ORDER BY 2 DESC LIMIT 1").fetchone()
        assert picks is not None
        stream_id, length = picks[0], int(picks[1])
        rounds = 300
        started = time.perf_counter()
        for _ in range(rounds):
            with store.transaction() as tx:
                tx.load_state(stream_id)
        load_s = (time.perf_counter() - started) / rounds
        with store.transaction() as tx:
            envelopes = tx.load_events(stream_id)
        raw = [codec.encode(e) for e in envelopes]
        started = time.perf_counter()
        for _ in range(rounds):
            fold([codec.decode(r).payload for r in raw])
        decode_fold_s = (time.perf_counter() - started) / rounds
        started = time.perf_counter()
        payloads = [e.payload for e in envelopes]
        for _ in range(rounds):
            fold(payloads)
        fold_only_s = (time.perf_counter() - started) / rounds
        result["one_stream"] = {
            "stream_events": length, "load_ms": load_s * 1000,
            "load_events_per_s": length / load_s,
            "decode_fold_ms": decode_fold_s * 1000,
            "decode_fold_events_per_s": length / decode_fold_s,
            "fold_ms": fold_only_s * 1000, "fold_events_per_s": length / fold_only_s,
        }
        log(f"  one stream of {length} events: load from Postgres + decode + fold "
            f"{load_s * 1000:.2f} ms ({length / load_s:,.0f} events/s); decode + fold "
            f"{decode_fold_s * 1000:.2f} ms; fold alone {fold_only_s * 1000:.3f} ms")

    finally:
        pool.close()

    # 3. Rebuild every projection (Projector.reset, then projecting the whole log) in one
    # process and in tasksaga-replay's default number (parallel_rebuild), as the tool does.
    result["rebuild_by_workers"] = {}
    for workers in sorted({1, DEFAULT_WORKERS}):
        result["rebuild_by_workers"][str(workers)] = done = _rebuild(url, codec, workers)
        log(f"  rebuild, {workers} process{'es' if workers > 1 else ''}: {done['projected']:,}"
            f" events projected in {done['seconds']:.1f} s ({done['events_per_s']:,.0f}"
            " events/s)")
    result["rebuild"] = result["rebuild_by_workers"][str(DEFAULT_WORKERS)]
    return result


def _rebuild(url: str, codec: AvroCodec, workers: int) -> dict[str, Any]:
    pool = open_pool(url, max_size=1, name="bench-replay")
    try:
        Projector(pool, codec).reset()
    finally:
        pool.close()  # the workers fork
    started = time.perf_counter()
    projected = project_in_parallel(url, codec, workers)
    elapsed = time.perf_counter() - started
    rate = projected / elapsed if elapsed else 0.0
    return {"workers": workers, "projected": projected, "seconds": elapsed,
            "events_per_s": rate, "complete": True}
