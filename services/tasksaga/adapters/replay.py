"""Event replay tooling: rebuild the projections from the log, or fold one task's stream.

    tasksaga-replay --rebuild        empty the projection tables and project the whole log again
                                     (--workers N processes, each a share of the tasks)
    tasksaga-replay --task TASK_ID   print one task's events and its folded state
    ... --include-archives           also the archived tasks (read from object storage, checked
                                     against their manifests; a rebuild restores them all)

Without --include-archives a rebuild leaves archived tasks with the summary their archive
kept (status, no steps); restored tasks are rebuilt from restored_events either way.

Over several shards (TASKSAGA_SHARDS, docs/scaling.md) a rebuild rebuilds every shard's
projections, each from its own log; --task reads the task's shard. The archives are kept by the
first shard (the archiver's tables are there), so they are read there. --database-url names one
database and works on it alone, shards or not.

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
from tasksaga.adapters.parallel_rebuild import (
    DEFAULT_WORKERS,
    RebuildWorkerFailed,
    project_in_parallel,
)
from tasksaga.adapters.payload_crypto import PayloadKeyError, payload_cipher_from_env
from tasksaga.adapters.pg_store import PostgresEventStore, open_pool
from tasksaga.adapters.projections import Projector
from tasksaga.config import ObjectStoreSettings
from tasksaga.core.audit import describe
from tasksaga.core.envelope import Envelope
from tasksaga.core.shards import ShardConfig, ShardConfigError, ShardMap, parse_shards
from tasksaga.core.state import TaskState, evolve, fold

#: Where the tools read: one database's URL, or every shard's.
Target = str | ShardConfig


def shards_of(target: Target) -> ShardConfig:
    """A URL as one shard holding every task; shards as they are."""
    return ShardConfig({"default": target}, ShardMap.single()) if isinstance(target, str) \
        else target


def target_from_env(database_url: str | None) -> Target | None:
    """What the tools read: ``database_url`` when given (that database alone), else the
    services' TASKSAGA_SHARDS / TASKSAGA_SHARD_BUCKETS (over TASKSAGA_DATABASE_URL); None when
    nothing names a database. Raises ShardConfigError on a bad shard setting."""
    if database_url:
        return database_url
    shards = os.environ.get("TASKSAGA_SHARDS")
    default = os.environ.get("TASKSAGA_DATABASE_URL", "")
    if not (shards and shards.strip()) and not default:
        return None
    return parse_shards(shards, os.environ.get("TASKSAGA_SHARD_BUCKETS"), default)


@dataclass(frozen=True)
class ShardRebuild:
    """What rebuilding one shard's projections did."""

    shard: str
    events: int
    seconds: float


def rebuild_shards(target: Target, codec: AvroCodec,
                   archiver: Callable[[ConnectionPool], Archiver] | None = None,
                   workers: int = DEFAULT_WORKERS) -> list[ShardRebuild]:
    """Rebuild every shard's projections from its own log, one shard after the other; the
    archives (kept by the first shard) are restored there first."""
    config = shards_of(target)
    done: list[ShardRebuild] = []
    for shard in config.map.shards:
        restore = archiver if shard == config.map.home else None
        count, seconds = rebuild(config.urls[shard], codec, restore, workers)
        done.append(ShardRebuild(shard, count, seconds))
    return done


def rebuild(database_url: str, codec: AvroCodec,
            archiver: Callable[[ConnectionPool], Archiver] | None = None,
            workers: int = DEFAULT_WORKERS) -> tuple[int, float]:
    """Rebuild one database's projections, projecting with ``workers`` processes."""
    started = time.perf_counter()
    pool = open_pool(database_url, max_size=2, name="replay")
    try:
        if archiver is not None:
            archiver(pool).restore_all()  # into restored_events, which the reset queues
        Projector(pool, codec).reset()
    finally:
        pool.close()  # before the workers fork: they open connections of their own
    count = project_in_parallel(database_url, codec, workers)
    return count, time.perf_counter() - started


def load_stream(target: Target, codec: AvroCodec, task_id: str,
                archiver: Callable[[ConnectionPool], Archiver] | None = None) -> list[Envelope]:
    """One task's events, in version order, from its shard's log (or, with ``archiver``, from
    its archive, found through the first shard, when the log no longer has them)."""
    config = shards_of(target)
    envelopes = _logged_events(config.urls[config.map.shard_of(task_id)], codec, task_id)
    if envelopes or archiver is None:
        return envelopes
    pool = open_pool(config.urls[config.map.home], max_size=1, name="replay-archives")
    try:
        return [codec.decode(e.payload) for e in archiver(pool).archived_events(task_id)]
    finally:
        pool.close()


def _logged_events(database_url: str, codec: AvroCodec, task_id: str) -> list[Envelope]:
    pool = open_pool(database_url, max_size=1, name="replay")
    try:
        with PostgresEventStore(pool, codec).transaction() as tx:
            return tx.load_events(task_id)
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


def show_task(target: Target, codec: AvroCodec, task_id: str,
              archiver: Callable[[ConnectionPool], Archiver] | None = None) -> int:
    envelopes = load_stream(target, codec, task_id, archiver)
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
    parser.add_argument("--workers", type=_workers, default=DEFAULT_WORKERS, metavar="N",
                        help="processes projecting a rebuild, each a share of the tasks "
                             f"(default: the cores, up to 4; here {DEFAULT_WORKERS})")
    parser.add_argument("--database-url",
                        help="this database alone (default: TASKSAGA_SHARDS, else "
                             "TASKSAGA_DATABASE_URL)")
    args = parser.parse_args()
    try:
        target = target_from_env(args.database_url)
    except ShardConfigError as error:
        print(error, file=sys.stderr)
        return 2
    if target is None:
        print("set TASKSAGA_DATABASE_URL (or TASKSAGA_SHARDS) or pass --database-url",
              file=sys.stderr)
        return 2
    try:
        codec = AvroCodec(cipher=payload_cipher_from_env())
    except PayloadKeyError as error:
        print(error, file=sys.stderr)
        return 2
    archiver = archiver_from_env() if args.include_archives else None
    if args.task:
        return show_task(target, codec, args.task, archiver)
    try:
        rebuilt = rebuild_shards(target, codec, archiver, args.workers)
    except RebuildWorkerFailed as error:
        print(f"the rebuild is incomplete, run it again: {error}", file=sys.stderr)
        return 1
    for done in rebuilt:
        print(rebuilt_line(done, len(rebuilt) > 1))
    return 0


def _workers(text: str) -> int:
    try:
        workers = int(text)
    except ValueError:
        workers = 0
    if workers < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of processes, 1 or more")
    return workers


def rebuilt_line(done: ShardRebuild, name_shard: bool) -> str:
    """What a rebuild did, naming the shard when there are several."""
    rate = done.events / done.seconds if done.seconds else 0.0
    of = f" of shard {done.shard}" if name_shard else ""
    return (f"rebuilt projections{of} from {done.events} events in {done.seconds:.2f} s "
            f"({rate:,.0f} events/s)")
