"""Beyond the four workloads (``run.py --only extra``): scale-out by consumer groups, 100 KB
payloads by reference against inline, and the CPU cost model of linear3 at a fixed rate.
The fan-out and the waiting tasks are in extra_waits.py; the pure part in extra_model.py.

Each shape runs the four services as processes (ours.OursSystem, its own topic prefix and a
fresh ``tasksaga_bench_extra`` database), the generator in this process, CPU from /proc
(procstat.py), and checks every task's log afterwards (ours.OursSystem.check): a shape whose
check fails reports no figures (run.py exits 1).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from bench import extra_model, loadgen
from bench.loadgen import StepPlan, Tracker
from bench.ours import OursSystem, recreate_database, sweep_and_check
from bench.sweep import SweepPlan
from bench.workloads import WORKLOADS, Workload

Log = Callable[[str], None]
TASK_MODULES = "bench.bench_tasks,bench.extra_tasks"
EXTRA_PARTS = ("scale", "payload", "fanout", "waiting", "cost", "hops")
# Its own database: another bench run on the shared server (another worktree's, whose
# bench.lock this run does not see) recreates tasksaga_bench, and would drop this one's.
EXTRA_DB = "tasksaga_bench_extra"


@dataclass(frozen=True)
class ExtraPlan:
    """How long each shape runs; ``quick()`` for the smoke run, ``full()`` for the full one."""

    sweep: SweepPlan
    payload_rate: float
    cost_rate: float
    fixed_warmup_s: float
    fixed_measure_s: float
    fan_out_items: int
    waiting_tasks: int
    waiting_rate: float
    waiting_gap_s: float
    waiting_wake_rate: float

    @classmethod
    def quick(cls) -> ExtraPlan:
        return cls(SweepPlan(warmup_s=1.5, measure_s=4.0, probe_transitions_per_s=600.0,
                             max_points=3, drain_s=20.0),
                   payload_rate=10.0, cost_rate=40.0, fixed_warmup_s=2.0, fixed_measure_s=8.0,
                   fan_out_items=1000, waiting_tasks=2000, waiting_rate=200.0,
                   waiting_gap_s=5.0, waiting_wake_rate=100.0)

    @classmethod
    def full(cls) -> ExtraPlan:
        return cls(SweepPlan(warmup_s=3.0, measure_s=8.0, probe_transitions_per_s=600.0,
                             max_points=4, drain_s=30.0),
                   payload_rate=10.0, cost_rate=40.0, fixed_warmup_s=3.0, fixed_measure_s=20.0,
                   fan_out_items=1000, waiting_tasks=10_000, waiting_rate=200.0,
                   waiting_gap_s=5.0, waiting_wake_rate=100.0)


@dataclass(frozen=True)
class Env:
    """What every shape needs from run.py."""

    stack_env: dict[str, str]
    stack_pids: dict[str, int]
    log_dir: Path
    log: Log
    linear3_max: float | None = None  # tasks/s, from this run's sweep (hops runs at half)


def new_system(env: Env, workload: Workload, **options: Any) -> OursSystem:
    db_url = recreate_database(env.stack_env["TASKSAGA_DATABASE_URL"], EXTRA_DB)
    return OursSystem(env.stack_env, db_url, env.log_dir, workload, Tracker(),
                      stack_pids=env.stack_pids,
                      extra_env={"TASKSAGA_TASK_MODULES": TASK_MODULES}, **options)


def checked(found: dict[str, Any], problems: list[str], tasks: int) -> dict[str, Any]:
    found.update({"check_problems": problems[:20], "check_problem_count": len(problems),
                  "tasks_checked": tasks})
    return found


# -- 1. scale-out by consumer groups --------------------------------------------------------------


def group_spread(bootstrap: str, group_id: str) -> tuple[str, dict[str, dict[str, list[int]]]]:
    """A consumer group's state and its assignment, member (client id) -> topic -> partitions."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    description = admin.describe_consumer_groups([group_id])[group_id].result(timeout=10)
    members = [(m.client_id, [(tp.topic, tp.partition) for tp in m.assignment.topic_partitions])
               for m in description.members]
    return str(description.state), extra_model.partitions_per_member(members)


def wait_for_spread(bootstrap: str, group_id: str, members: int,
                    timeout_s: float = 60.0) -> dict[str, Any]:
    """The group's assignment once ``members`` members each hold partitions (or at the
    timeout: what it was then, marked unsettled)."""
    deadline = time.time() + timeout_s
    state = "unknown"
    found: dict[str, dict[str, list[int]]] = {}
    while time.time() < deadline:
        try:
            state, found = group_spread(bootstrap, group_id)
        except (KafkaException, TimeoutError) as error:  # a coordinator moving: ask again
            state = f"not described ({error})"
        if len(found) == members and all(found.values()) and "STABLE" in state.upper():
            return {"group": group_id, "state": state, "members": found, "settled": True,
                    "owned_twice": extra_model.owned_twice(found)}
        time.sleep(1.0)
    return {"group": group_id, "state": state, "members": found, "settled": False,
            "owned_twice": extra_model.owned_twice(found)}


def run_scale(env: Env, plan: ExtraPlan) -> dict[str, Any]:
    """linear3's sweep with one orchestrator and one worker, then with two of each."""
    found: dict[str, Any] = {}
    for label, count in (("1+1", 1), ("2+2", 2)):
        system = new_system(env, WORKLOADS["linear3"], orchestrators=count, workers=count)
        system.name = f"tasksaga/{label}"
        groups: dict[str, Any] = {}

        def settle(system: OursSystem = system, groups: dict[str, Any] = groups,
                   count: int = count) -> None:
            for role, group in (("orchestrator", f"{system.prefix}-orchestrator"),
                                ("worker", f"{system.prefix}-worker-bench")):
                groups[role] = wait_for_spread(system.bootstrap, group, count)
                env.log(f"    {role} group: {groups[role]['members']}")

        env.log(f"== extra/scale: linear3 with {label} (orchestrators + workers)")
        result = sweep_and_check(system, plan.sweep, env.log, on_started=settle)
        point = result.get("max_point") or {}
        transitions = float(point.get("transitions_per_s") or 0.0)
        cpu = dict(point.get("cpu") or {})
        found[label] = {
            "max_rate": result.get("max_rate"), "transitions_per_s": round(transitions, 1),
            "cpu_cores": cpu, "us_per_step": extra_model.cost_per_step(cpu, transitions),
            "groups": groups, "points": result.get("points"),
            **{k: result[k] for k in ("check_problems", "check_problem_count",
                                      "tasks_checked")},
        }
        twice = [p for g in groups.values() for p in g["owned_twice"]]
        if twice:
            found[label]["check_problems"].append(f"partitions owned twice: {twice}")
            found[label]["check_problem_count"] += 1
    found["ratio"] = extra_model.throughput_ratio(found["2+2"]["transitions_per_s"],
                                                  found["1+1"]["transitions_per_s"])
    return found


# -- 2. and 5.: one fixed rate ------------------------------------------------------------------


def run_fixed_rate(env: Env, workload: Workload, rate: float, plan: ExtraPlan,
                   label: str) -> dict[str, Any]:
    """Offer ``rate`` tasks/s of ``workload`` (open loop), then check every task's log."""
    system = new_system(env, workload)
    system.name = f"tasksaga/{label}"
    env.log(f"== extra/{label}: {workload.title} at {rate:g} tasks/s "
            f"for {plan.fixed_measure_s:g} s")
    system.start()
    try:
        created: list[loadgen.TaskRecord] = []

        def new_task(index: int, intended: float) -> loadgen.TaskRecord:
            record = system.new_task(label, index, intended)
            created.append(record)
            return record

        step = loadgen.run_rate_step(
            system, system.tracker,
            StepPlan(rate, plan.fixed_warmup_s, plan.fixed_measure_s, drain_s=30.0),
            new_task, lambda r: workload.step_executions(r.fail), env.log)
        records = created[:step.sent]
        system.wait_all(records, 60)
        problems = system.check(records, env.log)
    finally:
        system.stop()
    env.log(f"    achieved {step.achieved:.1f} tasks/s, {step.transitions_per_s:.1f} steps/s, "
            f"e2e p50 {step.e2e.p50 * 1000:.1f} ms p99 {step.e2e.p99 * 1000:.1f} ms")
    found = {"workload": workload.key, "offered": rate, "achieved": round(step.achieved, 2),
             "transitions_per_s": round(step.transitions_per_s, 1),
             "e2e_ms": {k: round(v, 1) for k, v in step.e2e.as_ms().items()},
             "sustainable": step.verdict.sustainable, "reason": step.verdict.reason,
             "cpu_cores": step.cpu,
             "us_per_step": extra_model.cost_per_step(step.cpu, step.transitions_per_s)}
    return checked(found, problems, len(records))


def run_payloads(env: Env, plan: ExtraPlan) -> dict[str, Any]:
    return {workload.key: run_fixed_rate(env, workload, plan.payload_rate, plan,
                                         workload.key)
            for workload in (extra_model.PAYLOAD_INLINE, extra_model.PAYLOAD_ARTIFACT)}


def run_cost(env: Env, plan: ExtraPlan) -> dict[str, Any]:
    return run_fixed_rate(env, WORKLOADS["linear3"], plan.cost_rate, plan, "cost")


# -- the phase ------------------------------------------------------------------------------------


def run_extra_phase(env: Env, plan: ExtraPlan, parts: tuple[str, ...] = EXTRA_PARTS,
                    between: Callable[[], object] = lambda: None) -> dict[str, Any]:
    """Each selected shape in turn (``between`` runs before each: run.py waits for a quiet
    machine); each shape's figures with its run time."""
    from bench import extra_hops, extra_waits

    runners: dict[str, Callable[[Env, ExtraPlan], dict[str, Any]]] = {
        "scale": run_scale, "payload": run_payloads, "fanout": extra_waits.run_fan_out,
        "waiting": extra_waits.run_waiting, "cost": run_cost, "hops": extra_hops.run_hops}
    unknown = [p for p in parts if p not in runners]
    if unknown:
        raise ValueError(f"unknown extra part(s) {unknown}: choose from {', '.join(runners)}")
    found: dict[str, Any] = {}
    for part in parts:
        between()
        started = time.time()
        found[part] = runners[part](env, plan)
        found[part]["duration_s"] = round(time.time() - started)
        env.log(f"    extra/{part} took {found[part]['duration_s']} s")
    return found


def failed_parts(extra: dict[str, Any]) -> list[str]:
    """``extra/part[/shape]`` of every shape whose log check found problems."""
    failed = []
    for part, result in extra.items():
        shapes = [(f"extra/{part}", result)] + [
            (f"extra/{part}/{k}", v) for k, v in result.items()
            if isinstance(v, dict) and "check_problem_count" in v]
        failed += [name for name, r in shapes if r.get("check_problem_count")]
    return failed
