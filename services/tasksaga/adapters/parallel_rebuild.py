"""A rebuild's projecting, spread over processes: each projects a disjoint set of streams.

One process folds, describes and writes ~25-40k events/s and leaves Postgres idle while it
decodes (and itself idle while Postgres writes): streams are independent, so ``workers``
processes, each a ``Projector`` of one ``StreamPartition``, keep both busy and scale with the
cores. Each holds the projection lock shared per batch (projections.Projector), so a live
projector's batch (exclusive) runs only between theirs, never during one, and the rows are
those of one projector
(tests/integration/test_rebuild_equals_live.py).

The processes are forked: they inherit the codec (its cipher and key ring included) as the
caller built it, and open their own connections; the caller has none open while they run.
"""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.pg_store import open_pool
from tasksaga.adapters.projections import REBUILD_BATCH, Projector, StreamPartition

#: ``tasksaga-replay --rebuild``'s processes unless told: the machine's cores, up to 4 (a
#: rebuild shares the database with the running services).
DEFAULT_WORKERS = max(1, min(4, os.cpu_count() or 1))


class RebuildWorkerFailed(RuntimeError):
    """A rebuild process ended without projecting its streams; the rebuild is incomplete
    (run it again: a rebuild starts from an empty projection)."""


def project_in_parallel(database_url: str, codec: AvroCodec, workers: int,
                        batch_size: int = REBUILD_BATCH) -> int:
    """Project every queued stream (after ``Projector.reset``) with ``workers`` processes;
    returns the events projected. Raises RebuildWorkerFailed naming what a process reported."""
    if workers < 1:
        raise ValueError(f"workers={workers}: a rebuild needs at least one process")
    if workers == 1:
        return _project(database_url, codec, None, batch_size)
    context = multiprocessing.get_context("fork")
    started: list[tuple[BaseProcess, Connection]] = []
    for index in range(workers):
        receive, send = context.Pipe(duplex=False)
        process: BaseProcess = context.Process(
            target=_worker, name=f"rebuild-{index}",
            args=(send, database_url, codec, StreamPartition(index, workers), batch_size))
        process.start()
        send.close()
        started.append((process, receive))
    total, failures = 0, []
    for process, receive in started:
        try:
            outcome = receive.recv()
        except EOFError:
            outcome = f"{process.name} ended without a report"
        process.join()
        if isinstance(outcome, int):
            total += outcome
        else:
            failures.append(outcome)
    if failures:
        raise RebuildWorkerFailed("; ".join(failures))
    return total


def _worker(report: Connection, database_url: str, codec: AvroCodec,
            partition: StreamPartition, batch_size: int) -> None:
    try:
        report.send(_project(database_url, codec, partition, batch_size))
    except BaseException as error:
        report.send(f"partition {partition.index} of {partition.count}: "
                    f"{type(error).__name__}: {error}")
    finally:
        report.close()


def _project(database_url: str, codec: AvroCodec, partition: StreamPartition | None,
             batch_size: int) -> int:
    pool = open_pool(database_url, max_size=1, name="replay")
    try:
        return Projector(pool, codec, partition=partition).catch_up_fully(
            batch_size, rebuilding=True)
    finally:
        pool.close()
