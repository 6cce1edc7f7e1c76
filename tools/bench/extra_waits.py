"""Two extra shapes (``--only extra``): one task with a 1,000-item for_each, and thousands of
tasks waiting on a durable sleep at once (RSS of every process while they wait, and how late
their timers fire). The other shapes and the phase are in extra_phase.py.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from bench import extra_model, procstat
from bench.extra_phase import Env, ExtraPlan, checked, new_system
from bench.loadgen import TaskRecord, intended_times, send_on_schedule
from bench.ours import OursSystem

# -- 3. fan-out -----------------------------------------------------------------------------------


def run_fan_out(env: Env, plan: ExtraPlan) -> dict[str, Any]:
    """One task of ``plan.fan_out_items`` instances: submit to completion, steps/s, CPU µs per
    step, and the check that every item ran once (the log: one dispatch and one completion
    of each Each[i], no retry or surplus; the response: every index once)."""
    items = plan.fan_out_items
    workload = extra_model.fan_out_workload(items)
    system = new_system(env, workload, request_fields=lambda _r: {"items": items})
    system.name = "tasksaga/fanout"
    env.log(f"== extra/fanout: one task, a for_each of {items} items")
    system.start()
    try:
        record = TaskRecord("fanout-000000", time.time(), False)
        system.tracker.add(record)
        groups = system.cpu_groups()
        before = procstat.snapshot(groups)
        record.intended = time.time()
        system.submit(record)
        system.tracker.mark_sent(record.task_id, time.time())
        system.wait_all([record], 300)
        after = procstat.snapshot(groups)
        problems = system.check([record], env.log)
        response = json.loads(system.responses.get(record.task_id, "{}"))
    finally:
        system.stop()
    if (response.get("items"), response.get("distinct_items")) != (items, items):
        problems.append(f"the response counts {response.get('items')} results and "
                        f"{response.get('distinct_items')} distinct items, expected {items}")
    seconds = (record.completed - record.intended) if record.completed else None
    transitions = items / seconds if seconds else 0.0
    cpu = procstat.shares(before, after)
    env.log(f"    {items} items in {seconds or -1:.2f} s: {transitions:.1f} step transitions/s")
    found = {"items": items, "seconds": round(seconds, 2) if seconds else None,
             "transitions_per_s": round(transitions, 1), "cpu_cores": cpu,
             "us_per_step": extra_model.cost_per_step(cpu, transitions)}
    return checked(found, problems, 1)


# -- 4. waiting tasks -----------------------------------------------------------------------------


def rss_of(system: OursSystem) -> dict[str, int]:
    """RSS (KiB) of each service process, and of Kafka and Postgres (every Postgres process
    summed: shared buffers count in each backend's RSS, so it overstates Postgres)."""
    found: dict[str, int] = {}
    parents = procstat.parents()
    for group in system.cpu_groups():
        if group.name == "generator" or group.name.startswith("minio"):
            continue
        pids = procstat.descendants(group.pid, parents) if group.name == "postgres" \
            else {group.pid}
        total = 0
        for pid in pids:
            try:
                kib = extra_model.rss_kib(Path(f"/proc/{pid}/status").read_text())
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            total += kib or 0
        found[group.name] = total
    return found


def _event_counts(db_url: str) -> dict[str, int]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT event_type, count(*) FROM events WHERE event_type IN"
                            " ('StepWaiting', 'StepCompleted') GROUP BY event_type").fetchall()
    return {str(kind): int(count) for kind, count in rows}


def _timer_times(system: OursSystem) -> tuple[dict[str, int], dict[str, float], int]:
    """Each task's intended wake (StepWaiting.until_ms), its actual wake (recorded_at of the
    sleep's StepCompleted, ms) and how many reached the sleep after it was due."""
    due: dict[str, int] = {}
    woke: dict[str, float] = {}
    reached_at: dict[str, float] = {}
    with psycopg.connect(system.db_url) as conn:
        rows = conn.execute(
            "SELECT stream_id, event_type, payload, extract(epoch FROM recorded_at) FROM events"
            " WHERE event_type IN ('StepWaiting', 'StepCompleted')").fetchall()
    for stream_id, kind, raw, recorded in rows:
        if kind == "StepWaiting":
            until = system.codec.decode(bytes(raw)).payload.until_ms
            if until is not None:
                due[stream_id] = int(until)
                reached_at[stream_id] = float(recorded) * 1000
        else:
            woke[stream_id] = float(recorded) * 1000
    late = sum(1 for task, at in reached_at.items() if at > due[task])
    return due, woke, late


def run_waiting(env: Env, plan: ExtraPlan) -> dict[str, Any]:
    """``plan.waiting_tasks`` tasks sleeping at once: submitted at ``waiting_rate``/s, the
    first wakes ``waiting_gap_s`` after the last was sent, then one every 1 /
    ``waiting_wake_rate`` s in the order they came (a rate the orchestrator's timers keep
    up with here: all at once would measure how long 10,000 wake-ups take, not lateness)."""
    count, rate = plan.waiting_tasks, plan.waiting_rate
    send_s = count / rate
    wake_at: dict[str, int] = {}
    system = new_system(env, extra_model.SLEEP,
                        request_fields=lambda r: {"wake_at_ms": wake_at[r.task_id]})
    system.name = "tasksaga/waiting"
    env.log(f"== extra/waiting: {count} tasks asleep at once ({rate:g}/s sent, "
            f"{plan.waiting_wake_rate:g}/s woken)")
    system.start()
    try:
        time.sleep(2.0)
        baseline = rss_of(system)
        schedule = intended_times(time.time() + 0.2, rate, send_s)
        records = [system.new_task("sleep", i, t) for i, t in enumerate(schedule)]
        first_due = schedule[0] + send_s + plan.waiting_gap_s
        wake_at.update(extra_model.wake_times(
            [r.task_id for r in records], first_due, plan.waiting_wake_rate))
        for record in records:
            system.tracker.add(record)
        sender = threading.Thread(target=_send, args=(system, records, schedule), daemon=True)
        sender.start()
        peak: dict[str, Any] = {"waiting": -1}
        while time.time() < first_due + 1.0:  # the most asleep at once, and the RSS then
            counts = _event_counts(system.db_url)
            waiting = counts.get("StepWaiting", 0) - counts.get("StepCompleted", 0)
            if waiting > peak["waiting"]:
                peak = {"waiting": waiting, "at_s": round(time.time() - schedule[0], 1),
                        "rss_kib": rss_of(system)}
            time.sleep(0.5)
        sender.join()
        system.wait_all(records, count / plan.waiting_wake_rate + 120)
        problems = system.check(records, env.log)
        due, woke, reached_late = _timer_times(system)
    finally:
        system.stop()
    lateness = extra_model.spread(extra_model.lateness_ms(due, woke))
    env.log(f"    {peak['waiting']} asleep at once; timer lateness p50 {lateness.p50:.0f} ms "
            f"p99 {lateness.p99:.0f} ms; orchestrator RSS "
            f"{peak.get('rss_kib', {}).get('orchestrator', 0) / 1024:.0f} MiB "
            f"(before: {baseline.get('orchestrator', 0) / 1024:.0f} MiB)")
    found = {"tasks": count, "rate": rate, "wake_rate": plan.waiting_wake_rate,
             "first_sleep_s": round(first_due - schedule[0], 1),
             "last_sleep_s": round(max(wake_at.values()) / 1000 - schedule[-1], 1),
             "wakes_per_s": round(extra_model.rate_of(woke.values()), 1),
             "peak_waiting": peak["waiting"], "peak_at_s": peak.get("at_s"),
             "rss_kib_before": baseline, "rss_kib_waiting": peak.get("rss_kib", {}),
             "lateness_ms": lateness.to_json(), "reached_after_due": reached_late}
    return checked(found, problems, len(records))


def _send(system: OursSystem, records: list[TaskRecord], schedule: list[float]) -> None:
    """The open loop of loadgen.run_rate_step, without its measurement window."""
    send_on_schedule(system.submit, system.tracker, records, schedule)
