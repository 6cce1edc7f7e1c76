"""Archival throughput, and the cost of the partitioned log on appends.

    python -m bench.archive_bench append [--tasks 300]
        appends as the orchestrator makes them (lock the stream, append 1-2 events, commit),
        one writer, in a fresh schema, synchronous_commit off (the statements' cost, not the
        disk's): run it with this tree and with a tree before 018
        (PYTHONPATH) to compare; the migrations applied are the ones of the tree imported.
    python -m bench.archive_bench archive [--tasks 2000] [--events 10]
        a closed day partition of ended tasks archived to MinIO (read, write the container
        file, upload, read back and check, detach and drop), then every task restored
        (read back and checked again, written to restored_events), then one task restored.
        Task data is sealed with the local key ring, as the services write it.

The database is the stack's (``tools/stack env``), in a schema of the bench's own, dropped at
the end; the bucket is ``tasksaga-bench-archive``.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import psycopg

import stack_tool
from localrun import local_payload_cipher
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.migrations import apply_migrations
from tasksaga.adapters.pg_store import PostgresEventStore, open_pool
from tasksaga.adapters.wire import Envelope
from tasksaga.core import events as ev

BUCKET = "tasksaga-bench-archive"
OPENED = datetime(1991, 6, 1, 8, tzinfo=UTC)


@contextmanager
def private_schema(options: str = "") -> Iterator[str]:
    url = stack_tool.env()["TASKSAGA_DATABASE_URL"]
    schema = f"bench_archive_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        scoped = f"{url}?options={quote(f'-csearch_path={schema} {options}'.strip())}"
        apply_migrations(scoped)
        yield scoped
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _envelope(task_id: str, version: int, event: ev.TaskEvent, at_ms: int) -> Envelope:
    return Envelope(payload=event, message_id=f"{task_id}:{version}", task_id=task_id,
                    correlation_id=task_id, causation_id=None, occurred_at_ms=at_ms,
                    task_type="BenchTask", version=version)


def task_events(task_id: str, count: int, at_ms: int) -> list[ev.TaskEvent]:
    """A submitted task, ``count - 2`` completed steps with a small payload, completed."""
    request = '{"source": "s3://bench/input.bin", "size": 1048576, "tags": ["a", "b"]}'
    events: list[ev.TaskEvent] = [ev.TaskSubmitted(task_id, "BenchTask", request, None, None,
                                                   at_ms, None)]
    events += [ev.StepCompleted(f"Step{i}", 1, '{"key": "out/' + str(i) + '", "bytes": 4096}',
                                at_ms + i) for i in range(count - 2)]
    return [*events, ev.TaskCompleted('{"ok": true}', at_ms + count)]


def bench_append(tasks: int) -> None:
    codec = AvroCodec()
    # Commits without waiting for the disk: what is compared is the statements' cost, which
    # a shared machine's fsync times would drown.
    with private_schema("-csynchronous_commit=off") as url:
        pool = open_pool(url, max_size=2, name="bench-append")
        store = PostgresEventStore(pool, codec)
        now_ms = int(time.time() * 1000)
        transactions = events = 0
        started = time.perf_counter()
        for _ in range(tasks):
            task_id = f"bench-{uuid.uuid4()}"
            version = 0
            for batch in ([0], [1, 2], [3], [4, 5], [6]):  # the orchestrator's usual shape
                history = task_events(task_id, 7, now_ms)
                with store.transaction() as tx:
                    tx.lock_stream(task_id)
                    tx.append(task_id, version, [_envelope(task_id, version + 1 + i, history[b],
                                                           now_ms) for i, b in enumerate(batch)])
                version += len(batch)
                transactions += 1
                events += len(batch)
        seconds = time.perf_counter() - started
        pool.close()
    print(f"append: {transactions} transactions ({events} events) in {seconds:.2f} s: "
          f"{transactions / seconds:,.0f} tx/s, {events / seconds:,.0f} events/s, "
          f"{1000 * seconds / transactions:.2f} ms per append")


def bench_archive(tasks: int, per_task: int) -> None:
    from tasksaga.adapters.archive import Archiver
    from tasksaga.adapters.object_store import MinioObjectStore
    from tasksaga.adapters.partitions import PartitionPeriod, create_partition
    from tasksaga.adapters.projections import Projector

    env = stack_tool.env()
    objects = MinioObjectStore(env["TASKSAGA_S3_ENDPOINT"], env["TASKSAGA_S3_ACCESS_KEY"],
                               env["TASKSAGA_S3_SECRET_KEY"])
    objects.ensure_bucket(BUCKET)
    # Task data sealed as the services seal it: the archive copies ciphertext, which does not
    # compress the way repeated plain JSON would.
    codec = AvroCodec(cipher=local_payload_cipher())
    with private_schema() as url:
        pool = open_pool(url, max_size=3, name="bench-archive")
        with pool.connection() as conn:
            day = PartitionPeriod.parse("day").floor(OPENED)  # a closed day, long ago
            create_partition(conn, day, day + timedelta(days=1))
        store = PostgresEventStore(pool, codec)
        at_ms = int(OPENED.timestamp() * 1000)
        ids = [f"bench-{uuid.uuid4()}" for _ in range(tasks)]
        for start in range(0, tasks, 200):
            with store.transaction() as tx:
                for task_id in ids[start:start + 200]:
                    tx.append(task_id, 0, [_envelope(task_id, v, e, at_ms) for v, e in
                                           enumerate(task_events(task_id, per_task, at_ms), 1)])
        Projector(pool, codec).catch_up_fully()
        archiver = Archiver(pool, objects, BUCKET, prefix=f"bench/{uuid.uuid4().hex[:8]}")
        total = tasks * per_task
        started = time.perf_counter()
        report = archiver.run(timedelta(days=1))
        archived_s = time.perf_counter() - started
        assert report.archived and report.archived[0].events == total, report.lines()
        started = time.perf_counter()
        restored_tasks, restored = archiver.restore_all()
        restored_s = time.perf_counter() - started
        started = time.perf_counter()
        archiver.restore(ids[0])
        one_s = time.perf_counter() - started
        pool.close()
    size = report.archived[0].size_bytes
    print(f"archive: {total} events of {tasks} tasks ({size / 1e6:.1f} MB in the container file, "
          f"{size / total:.0f} B/event) archived in {archived_s:.2f} s: "
          f"{total / archived_s:,.0f} events/s")
    print(f"restore all: {restored} events of {restored_tasks} tasks in {restored_s:.2f} s: "
          f"{restored / restored_s:,.0f} events/s; one task: {one_s * 1000:.0f} ms "
          f"(reads its whole partition's file)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    append = commands.add_parser("append")
    append.add_argument("--tasks", type=int, default=300)
    archive = commands.add_parser("archive")
    archive.add_argument("--tasks", type=int, default=2000)
    archive.add_argument("--events", type=int, default=10)
    args = parser.parse_args()
    if args.command == "append":
        bench_append(args.tasks)
    else:
        bench_archive(args.tasks, args.events)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
