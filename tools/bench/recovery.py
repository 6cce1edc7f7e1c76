"""Recovery under load: kill -9 of an orchestrator, then (a) restart it, (b) let another take over.

Progress means an event appended to the log (``events.recorded_at``, the appending
transaction's start). (a) One orchestrator with a static instance id; it is killed and started
again at once (as a supervisor would): the figure is the time from the restart to the first
event appended after it. (b) Two orchestrators; one is killed and not restarted: the figure is
the time from the kill to the first event appended for a task on a partition the killed one
owned. Every task of the run must still end exactly once (the same check as the sweep).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka.admin import AdminClient

from bench import loadgen
from bench.loadgen import StepPlan, TaskRecord, Tracker
from bench.ours import OursSystem
from bench.workloads import WORKLOADS


def _first_event_after(url: str, moment: datetime, streams: list[str] | None,
                       timeout_s: float) -> datetime | None:
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if streams is None:
                row = conn.execute("SELECT min(recorded_at) FROM events WHERE recorded_at > %s",
                                   (moment,)).fetchone()
            else:
                row = conn.execute(
                    "SELECT min(recorded_at) FROM events WHERE recorded_at > %s"
                    " AND stream_id = ANY(%s)", (moment, streams)).fetchone()
            if row is not None and row[0] is not None:
                return row[0]  # type: ignore[no-any-return]
            time.sleep(0.02)
    return None


def _first_handled_after(url: str, moment: datetime, commands: list[str], results: list[str],
                         timeout_s: float) -> datetime | None:
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT min(recorded_at) FROM events WHERE recorded_at > %s AND ("
                " (stream_id = ANY(%s) AND event_type = 'TaskSubmitted') OR"
                " (stream_id = ANY(%s) AND event_type IN ('StepCompleted', 'StepFailed',"
                " 'StepCompensated', 'StepCompensationFailed')))",
                (moment, commands, results)).fetchone()
            if row is not None and row[0] is not None:
                return row[0]  # type: ignore[no-any-return]
            time.sleep(0.02)
    return None


def _assignment(bootstrap: str, group: str) -> dict[str, list[str]]:
    """Topic partitions per member (by instance id) of the orchestrators' group."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    description = admin.describe_consumer_groups([group], request_timeout=10)[group].result(
        timeout=15)
    return {str(m.group_instance_id or m.client_id): sorted(
        f"{tp.topic.rsplit('.', 1)[-1]}[{tp.partition}]"
        for tp in (m.assignment.topic_partitions if m.assignment else []))
        for m in description.members}


def _owned_partitions(bootstrap: str, group: str, instance: str, topic: str) -> set[int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.describe_consumer_groups([group], request_timeout=10)
    description = futures[group].result(timeout=15)
    owned: set[int] = set()
    for member in description.members:
        if member.group_instance_id == instance and member.assignment is not None:
            owned |= {tp.partition for tp in member.assignment.topic_partitions
                      if tp.topic == topic}
    return owned


def run_recovery(
    stack_env: dict[str, str], db_url: str, log_dir: Path, rate: float, kill_after_s: float,
    stack_pids: dict[str, int], log: Callable[[str], None], tail_s: float = 20.0,
) -> dict[str, Any]:
    results: dict[str, Any] = {"rate": rate, "workload": "linear3"}
    for scenario, orchestrators in (("restart", 1), ("takeover", 2)):
        system = OursSystem(stack_env, db_url, log_dir, WORKLOADS["linear3"], Tracker(),
                            orchestrators=orchestrators, stack_pids=stack_pids)
        system.start()
        try:
            results[scenario] = _scenario(system, scenario, db_url, rate, kill_after_s,
                                          kill_after_s + tail_s, log)
        finally:
            system.stop()
    return results


def _scenario(system: OursSystem, scenario: str, db_url: str, rate: float, kill_after_s: float,
              total_s: float, log: Callable[[str], None]) -> dict[str, Any]:
    workload = system.workload
    time.sleep(2.0)  # every partition assigned before the load starts
    created: list[TaskRecord] = []

    def new_task(index: int, intended: float) -> TaskRecord:
        record = system.new_task(f"rec{scenario}", index, intended)
        created.append(record)
        return record

    outcome: dict[str, Any] = {}

    def load() -> None:
        outcome["step"] = loadgen.run_rate_step(
            system, system.tracker,
            StepPlan(rate, 1.0, total_s - 1.0, drain_s=60.0, abort_backlog_s=600.0),
            new_task, lambda r: workload.step_executions(r.fail), log)

    loader = threading.Thread(target=load, name="recovery-load", daemon=True)
    loader.start()
    time.sleep(kill_after_s)
    victim_index = system.orchestrators - 1
    owned_commands: set[int] = set()
    owned_results: set[int] = set()
    if scenario == "takeover":
        # cooperative-sticky assigns the two topics independently: the victim may own a
        # task's commands, its step results, or both. Progress on its partitions is an event
        # only a handler of those partitions appends: TaskSubmitted for task-commands, a step
        # outcome for step-results.
        group = f"{system.prefix}-orchestrator"
        instance = f"{system.prefix}-orchestrator-{victim_index}"
        owned_commands = _owned_partitions(system.bootstrap, group, instance,
                                           system.topics.task_commands)
        owned_results = _owned_partitions(system.bootstrap, group, instance,
                                          system.topics.step_results)
    system.services.kill(system.orchestrator_name(victim_index), signal.SIGKILL)
    # After the kill returned (the process is reaped): a transaction the victim began just
    # before dying would otherwise look like progress.
    killed_at = datetime.now(UTC)
    figures: dict[str, Any] = {}
    if scenario == "takeover":
        figures["partitions_before_kill"] = _assignment(
            system.bootstrap, f"{system.prefix}-orchestrator")
    if scenario == "restart":
        restarted_at = datetime.now(UTC)
        system.start_orchestrator(0)
        resumed = _first_event_after(db_url, restarted_at, None, 60)
        figures |= {
            "resume_after_restart_s": (resumed - restarted_at).total_seconds()
            if resumed else None,
            "resume_after_kill_s": (resumed - killed_at).total_seconds() if resumed else None,
        }
    else:
        resumed = None
        deadline = time.monotonic() + 60
        while resumed is None and time.monotonic() < deadline:
            tasks = list(created)
            commands = [r.task_id for r in tasks
                        if system.partitions.get(r.task_id) in owned_commands]
            results = [r.task_id for r in tasks
                       if system.partitions.get(r.task_id) in owned_results]
            resumed = _first_handled_after(db_url, killed_at, commands, results, 0.5)
        figures |= {
            "victim_partitions": {"task-commands": sorted(owned_commands),
                                  "step-results": sorted(owned_results)},
            "takeover_after_kill_s": (resumed - killed_at).total_seconds() if resumed else None,
        }
    log(f"  {scenario}: {figures}")
    loader.join(timeout=total_s + 90)
    records = list(created)
    system.wait_all(records, 90)
    problems = system.check(records, log)
    step = outcome.get("step")
    figures.update({
        "tasks": len(records), "check_problems": problems[:10],
        "check_problem_count": len(problems),
        "e2e_max_s": None if step is None else step.e2e.max,
        "e2e_p99_ms": None if step is None else step.e2e.p99 * 1000,
    })
    if problems:
        return {"check_failed": problems[:10]}
    return figures
