"""One shard against two: the orchestrator's write path (inbox claim, append, outbox, timers
in one transaction per shard) over one PostgreSQL cluster, then over two.

``make bench-shards`` (or ``python tools/bench/shards.py --tasks 2000``) runs in process,
without Kafka: ``--writers`` threads each hand the Orchestrator batches of ``--batch``
SubmitTask messages (a 3-step saga: each submission appends its events, enqueues its first
step's command and schedules its timeout), first on a fresh schema of the stack's cluster
alone, then on two shards: that schema's twin and a throwaway second cluster
(tools/stack's PostgresShard, as ``tools/stack up --pg-shards 2`` starts). It prints
submissions per second for each. Both clusters share this machine's cores and disk, so the
figure shows the routing's overhead and what a second cluster's own WAL and fsync give here,
not what a second machine would.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for path in (REPO / "services", REPO / "examples", REPO, REPO / "tools"):
    sys.path.insert(0, str(path))

from localrun import local_payload_cipher  # noqa: E402
from tasksaga.adapters.avro_codec import AvroCodec  # noqa: E402
from tasksaga.adapters.pg_shards import (  # noqa: E402
    ShardedEventStore,
    migrate_shards,
    open_shard_pools,
)
from tasksaga.adapters.wire import Envelope, Topics  # noqa: E402
from tasksaga.core import messages as msg  # noqa: E402
from tasksaga.core.registry import TaskRegistry  # noqa: E402
from tasksaga.core.shards import ShardConfig, ShardMap  # noqa: E402
from tasksaga.orchestrator.processor import Orchestrator, database_clock  # noqa: E402
from tests.integration.shard_support import second_cluster, shard_urls  # noqa: E402
from tests.unit.sagas import Req, linear  # noqa: E402


def run(urls: dict[str, str], tasks: int, writers: int, batch: int) -> float:
    """Submissions per second over the shards at ``urls``."""
    config = ShardConfig(urls, ShardMap.even(list(urls)))
    migrate_shards(config)
    pools = open_shard_pools(config, writers + 2, "bench-shards")
    codec = AvroCodec(cipher=local_payload_cipher())
    try:
        task = linear(3, timeout_seconds=3600)
        orchestrator = Orchestrator(TaskRegistry([task]), ShardedEventStore(
            config.map, pools, codec), codec, Topics("bench-shards"), database_clock,
            lambda: 0.0)
        request = Req().model_dump_json()
        per_writer = tasks // writers

        def write() -> None:
            for _ in range(0, per_writer, batch):
                envelopes = []
                for _ in range(batch):
                    task_id = str(uuid.uuid4())
                    envelopes.append(Envelope(
                        payload=msg.SubmitTask(task_id, task.name, request, None, None, 0),
                        message_id=str(uuid.uuid4()), task_id=task_id,
                        correlation_id=task_id, causation_id=None, occurred_at_ms=0))
                orchestrator.handle_batch(envelopes)

        threads = [threading.Thread(target=write) for _ in range(writers)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return per_writer * writers / (time.perf_counter() - started)
    finally:
        for pool in pools.values():
            pool.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=20)
    args = parser.parse_args()
    database_url = os.environ.get("TASKSAGA_DATABASE_URL",
                                  "postgresql://tasksaga:tasksaga@127.0.0.1:15432/tasksaga")
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as folder, \
            second_cluster(Path(folder) / "stack") as second_url:
        with shard_urls({"one": database_url}) as one:
            single = run(one, args.tasks, args.writers, args.batch)
        with shard_urls({"a": database_url, "b": second_url}) as two:
            double = run(two, args.tasks, args.writers, args.batch)
    print(f"{args.tasks} submissions, {args.writers} writers, batches of {args.batch}: "
          f"one shard {single:,.0f}/s, two shards (two clusters) {double:,.0f}/s "
          f"({double / single:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
