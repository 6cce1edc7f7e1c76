"""Warm the shared Kafka broker's JIT compiler before the first measurement.

A broker just started by ``tools/stack up`` spends minutes compiling its hot paths: in its
first three minutes under load its C2 compiler thread used 20 of its 67 CPU seconds (30%),
charged to Kafka's cost per step and taken from the two cores the run measures. A deployed
broker runs for weeks, past that; the peers' servers (Redis, PostgreSQL) are native code. So
before the first sweep the bench offers linear3 at a moderate rate, in rounds, until a round
leaves the broker's compiler threads nearly idle (or a time limit passes), and reports what it
saw. Nothing measured in these rounds enters the results.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import loadgen, procstat
from bench.loadgen import StepPlan, Tracker
from bench.ours import BENCH_DB, OursSystem, recreate_database
from bench.workloads import WORKLOADS


def compiler_seconds(pid: int, proc: Path = Path("/proc")) -> float:
    """CPU seconds the JVM's JIT compiler threads (``C1/C2 CompilerThre…``) used so far."""
    total = 0
    tasks = proc / str(pid) / "task"
    for tid in os.listdir(tasks):
        try:
            name = (tasks / tid / "comm").read_text()
            if not name.startswith(("C1 Compiler", "C2 Compiler")):
                continue
            total += procstat.cpu_ticks((tasks / tid / "stat").read_text())
        except OSError:  # the thread ended meanwhile
            continue
    return total / procstat.TICKS


def warm_kafka(stack_env: dict[str, str], stack_pids: dict[str, int], log_dir: Path,
               log: Callable[[str], None], *, rate: float = 40.0, round_s: float = 15.0,
               max_s: float = 240.0, settled_cores: float = 0.02) -> dict[str, Any]:
    """Offer linear3 at ``rate`` in rounds of ``round_s`` until the compiler threads used
    under ``settled_cores`` of a core in a round, or ``max_s`` passed."""
    kafka = stack_pids.get("kafka")
    if kafka is None:
        return {"skipped": "no Kafka pid"}
    db_url = recreate_database(stack_env["TASKSAGA_DATABASE_URL"], BENCH_DB)
    workload = WORKLOADS["linear3"]
    system = OursSystem(stack_env, db_url, log_dir, workload, Tracker(),
                        stack_pids=stack_pids)
    system.name = "tasksaga/warm-up"
    started = time.time()
    compiled_before = compiler_seconds(kafka)
    rounds: list[float] = []
    system.start()
    try:
        index = 0
        while time.time() - started < max_s:
            before, at = compiler_seconds(kafka), time.time()

            def new_task(i: int, intended: float, base: int = index) -> loadgen.TaskRecord:
                return system.new_task("warmup", base + i, intended)

            step = loadgen.run_rate_step(
                system, system.tracker, StepPlan(rate, 0.0, round_s, drain_s=20.0),
                new_task, lambda r: workload.step_executions(r.fail), lambda _line: None)
            index += step.sent
            share = (compiler_seconds(kafka) - before) / (time.time() - at)
            rounds.append(round(share, 3))
            log(f"    warm-up round {len(rounds)}: Kafka's JIT compiler used {share:.3f} cores")
            if share < settled_cores:
                break
    finally:
        system.stop()
    return {"seconds": round(time.time() - started, 1), "rate": rate,
            "compiler_cores_per_round": rounds,
            "compiler_seconds": round(compiler_seconds(kafka) - compiled_before, 1),
            "settled": bool(rounds) and rounds[-1] < settled_cores}
