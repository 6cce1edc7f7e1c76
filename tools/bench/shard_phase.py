"""One shard against two, on the real system: the four services as processes, linear3.

The same rate sweep as the main bench (``sweep.sweep``) runs twice: on one event store shard
(the stack's PostgreSQL), then on two (the stack's cluster and a throwaway second cluster,
tools/stack's PostgresShard in a temporary folder, with ``TASKSAGA_SHARDS`` naming both for
the services). Each reports its maximum step transitions/s and, at that point, the CPU µs per
step transition of each process (from /proc, as the main bench does). Both clusters share
this machine's cores and disk: the figures show the cost of routing and what a second WAL
gives here, not what a second machine would.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stacklib.common import Settings, pg_url
from stacklib.ops import stop_one
from stacklib.postgres import PostgresShard

from bench.capacity import us_per_step
from bench.loadgen import Tracker
from bench.ours import BENCH_DB, OursSystem, recreate_database, sweep_and_check
from bench.sweep import SweepPlan
from bench.workloads import WORKLOADS

SECOND_POSTGRES = "postgres-2"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def second_cluster(stack_dir: Path) -> Iterator[tuple[str, int]]:
    """A throwaway second PostgreSQL cluster on a free port: its URL and its postmaster pid."""
    settings = Settings(stack_dir=stack_dir, pg_port=_free_port() - 1, pg_shards=2)
    cluster = PostgresShard(settings, 2)
    try:
        cluster.start()
        cluster.wait_ready(60)
        pid = cluster.pid()
        if pid is None:
            raise RuntimeError(f"the second PostgreSQL cluster under {stack_dir} did not stay up")
        yield pg_url(settings, 2), pid
    finally:
        stop_one(cluster)


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """The figures of one sweep: max tasks/s, step transitions/s and CPU µs per step there."""
    point = result.get("max_point") or {}
    transitions = float(point.get("transitions_per_s") or 0.0)
    cpu = dict(point.get("cpu") or {})
    return {"max_rate": result.get("max_rate"), "transitions_per_s": round(transitions, 1),
            "cpu_cores": cpu,
            "us_per_step": us_per_step(cpu, transitions) if transitions > 0 else {}}


def run_one(label: str, stack_env: dict[str, str], plan: SweepPlan, stack_pids: dict[str, int],
            log_dir: Path, log: Callable[[str], None], shard_urls: dict[str, str] | None,
            extra_pids: dict[str, int]) -> dict[str, Any]:
    workload = WORKLOADS["linear3"]
    first = recreate_database(stack_env["TASKSAGA_DATABASE_URL"], BENCH_DB)
    extra_env: dict[str, str] = {}
    urls = [first]
    if shard_urls:
        urls = [first, *(recreate_database(u, BENCH_DB) for u in shard_urls.values())]
        names = ["pg1", *shard_urls]
        extra_env["TASKSAGA_SHARDS"] = " ".join(f"{n}={u}" for n, u in zip(names, urls,
                                                                            strict=True))
    system = OursSystem(stack_env, first, log_dir, workload, Tracker(),
                        stack_pids={**stack_pids, **extra_pids}, extra_env=extra_env,
                        event_store_urls=urls)
    system.name = f"tasksaga/{label}"
    log(f"== shards: linear3 on {label}")
    result = sweep_and_check(system, plan, log)
    found = summarise(result)
    found.update({key: result[key] for key in ("check_problems", "check_problem_count",
                                               "tasks_checked", "points")})
    return found


def run_shard_phase(stack_env: dict[str, str], plan: SweepPlan, stack_pids: dict[str, int],
                    log_dir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """linear3 on one shard, then on two; each one's figures and the ratio of their maxima."""
    found: dict[str, Any] = {"one": run_one("one shard", stack_env, plan, stack_pids, log_dir,
                                            log, None, {})}
    with tempfile.TemporaryDirectory(prefix="bench-shard2-") as folder:
        log(f"== shards: a second PostgreSQL cluster under {folder}")
        with second_cluster(Path(folder) / "stack") as (url, pid):
            found["two"] = run_one("two shards", stack_env, plan, stack_pids, log_dir, log,
                                   {"pg2": url}, {SECOND_POSTGRES: pid})
    one, two = found["one"]["transitions_per_s"], found["two"]["transitions_per_s"]
    found["ratio"] = round(two / one, 2) if one else None
    return found
