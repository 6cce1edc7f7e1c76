"""Where a task's end-to-end time goes (``--only extra --extra hops``): linear3 at half of its
maximum, every task's end-to-end time cut into hops at the moments the bench can see
(extra_model.HOPS): its own send and receipt, the orchestrator's transactions that recorded
TaskSubmitted and TaskCompleted, and the step times the worker wrote in the step data.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg

from bench import extra_model, loadgen
from bench.extra_phase import Env, ExtraPlan, checked, new_system
from bench.loadgen import StepPlan
from bench.workloads import WORKLOADS


def run_hops(env: Env, plan: ExtraPlan) -> dict[str, Any]:
    workload = WORKLOADS["linear3"]
    rate = env.linear3_max / 2 if env.linear3_max else plan.cost_rate
    system = new_system(env, workload)
    system.name = "tasksaga/hops"
    env.log(f"== extra/hops: linear3 at {rate:.1f} tasks/s (half of its maximum) for "
            f"{plan.fixed_measure_s:g} s, each task's time cut into hops")
    system.start()
    created: list[loadgen.TaskRecord] = []
    try:
        def new_task(index: int, intended: float) -> loadgen.TaskRecord:
            created.append(record := system.new_task("hops", index, intended))
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
    measured = [r for r in records if r.intended >= records[0].intended + plan.fixed_warmup_s]
    moments = task_moments(system.db_url, measured, system.responses)
    breakdown = extra_model.hop_breakdown(moments)
    env.log("    " + "; ".join(f"{k} p50 {v['p50']:.1f} p99 {v['p99']:.1f} ms"
                               for k, v in breakdown.items()))
    found = {"workload": workload.key, "offered": round(rate, 2),
             "achieved": round(step.achieved, 2), "tasks": len(moments),
             "hops_ms": breakdown, "cpu_cores": step.cpu}
    return checked(found, problems, len(records))


def task_moments(db_url: str, records: list[loadgen.TaskRecord],
                 responses: dict[str, str]) -> list[extra_model.TaskMoments]:
    """The moments of each completed task of ``records``, from its log and its response."""
    ids = [r.task_id for r in records if r.completed is not None and r.sent is not None]
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT stream_id, event_type, extract(epoch FROM recorded_at)::float8 FROM events"
            " WHERE stream_id = ANY(%s) AND event_type IN ('TaskSubmitted', 'TaskCompleted')",
            (ids,)).fetchall()
    recorded: dict[str, dict[str, float]] = {}
    for stream, event_type, at in rows:
        recorded.setdefault(stream, {})[event_type] = float(at)
    found = []
    for record in records:
        times = recorded.get(record.task_id, {})
        response = responses.get(record.task_id)
        if len(times) < 2 or response is None or record.sent is None \
                or record.completed is None:
            continue
        steps = json.loads(response)["steps"].values()
        found.append(extra_model.TaskMoments(
            record.intended, record.sent, times["TaskSubmitted"],
            min(start for start, _ in steps), max(end for _, end in steps),
            times["TaskCompleted"], record.completed))
    return found
