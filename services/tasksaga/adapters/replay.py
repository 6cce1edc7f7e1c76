"""Event replay tooling: rebuild the projections from the log, or fold one task's stream.

    tasksaga-replay --rebuild        empty the projection tables and project the whole log again
    tasksaga-replay --task TASK_ID   print one task's events and its folded state
    ... --include-archives           also the archived tasks (read from object storage, checked
                                     against their manifests; a rebuild restores them all)

Without --include-archives a rebuild leaves archived tasks with the summary their archive
kept (status, no steps); restored tasks are rebuilt from restored_events either way.

Safe while the services run: the projector takes an advisory lock, so a running orchestrator's
projector waits while the rebuild holds it and then carries on from the new checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from psycopg_pool import ConnectionPool

from tasksaga.adapters.archive import Archiver
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.object_store import MinioObjectStore
from tasksaga.adapters.payload_crypto import PayloadKeyError, payload_cipher_from_env
from tasksaga.adapters.pg_store import PostgresEventStore, open_pool
from tasksaga.adapters.projections import Projector
from tasksaga.config import ObjectStoreSettings
from tasksaga.core.audit import describe
from tasksaga.core.envelope import Envelope
from tasksaga.core.state import TaskState, evolve, fold


def rebuild(database_url: str, codec: AvroCodec,
            archiver: Callable[[ConnectionPool], Archiver] | None = None) -> tuple[int, float]:
    pool = open_pool(database_url, max_size=2, name="replay")
    try:
        projector = Projector(pool, codec)
        started = time.perf_counter()
        if archiver is not None:
            archiver(pool).restore_all()  # into restored_events, which the reset queues
        projector.reset()
        count = projector.catch_up_fully()
        return count, time.perf_counter() - started
    finally:
        pool.close()


def load_stream(database_url: str, codec: AvroCodec, task_id: str,
                archiver: Callable[[ConnectionPool], Archiver] | None = None) -> list[Envelope]:
    """One task's events, in version order, from the log (or, with ``archiver``, from its
    archive when the log no longer has them)."""
    pool = open_pool(database_url, max_size=1, name="replay")
    try:
        with PostgresEventStore(pool, codec).transaction() as tx:
            envelopes = tx.load_events(task_id)
        if not envelopes and archiver is not None:
            envelopes = [codec.decode(e.payload) for e in archiver(pool).archived_events(task_id)]
        return envelopes
    finally:
        pool.close()


@dataclass(frozen=True)
class FoldStep:
    """One event of a stream and the state the fold reached with it."""

    envelope: Envelope
    summary: str  # the audit line, described against the state before the event
    state: TaskState


def fold_steps(envelopes: list[Envelope]) -> list[FoldStep]:
    """The fold of a stream, event by event (pure)."""
    state = fold([])
    folded: list[FoldStep] = []
    for envelope in envelopes:
        summary = describe(envelope.payload, state, envelope.occurred_at_ms)
        state = evolve(state, envelope.payload)
        folded.append(FoldStep(envelope, summary, state))
    return folded


def show_task(database_url: str, codec: AvroCodec, task_id: str,
              archiver: Callable[[ConnectionPool], Archiver] | None = None) -> int:
    envelopes = load_stream(database_url, codec, task_id, archiver)
    if not envelopes:
        print(f"no events for task {task_id}", file=sys.stderr)
        return 1
    folded = fold_steps(envelopes)
    for step in folded:
        print(f"v{step.envelope.version:<4} {type(step.envelope.payload).__name__:28} "
              f"{step.summary}")
    print(json.dumps(asdict(folded[-1].state), indent=2, default=str))
    return 0


def archiver_from_env() -> Callable[[ConnectionPool], Archiver]:
    s3 = ObjectStoreSettings()  # from TASKSAGA_S3_*
    objects = MinioObjectStore(s3.endpoint, s3.access_key, s3.secret_key, s3.secure, s3.region)
    bucket = os.environ.get("TASKSAGA_ARCHIVE_BUCKET", "tasksaga-archive")
    return lambda pool: Archiver(pool, objects, bucket)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--rebuild", action="store_true", help="rebuild all projections")
    group.add_argument("--task", metavar="TASK_ID", help="print one task's stream and state")
    parser.add_argument("--include-archives", action="store_true",
                        help="also read archived tasks from object storage (TASKSAGA_S3_*, "
                             "TASKSAGA_ARCHIVE_BUCKET)")
    parser.add_argument("--database-url", default=os.environ.get("TASKSAGA_DATABASE_URL"))
    args = parser.parse_args()
    if not args.database_url:
        print("set TASKSAGA_DATABASE_URL or pass --database-url", file=sys.stderr)
        return 2
    try:
        codec = AvroCodec(cipher=payload_cipher_from_env())
    except PayloadKeyError as error:
        print(error, file=sys.stderr)
        return 2
    archiver = archiver_from_env() if args.include_archives else None
    if args.task:
        return show_task(args.database_url, codec, args.task, archiver)
    count, seconds = rebuild(args.database_url, codec, archiver)
    rate = count / seconds if seconds else 0.0
    print(f"rebuilt projections from {count} events in {seconds:.2f} s ({rate:,.0f} events/s)")
    return 0
