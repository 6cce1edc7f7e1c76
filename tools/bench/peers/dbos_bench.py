"""DBOS (durable workflows as a library, state in Postgres) under the same open-loop sweep.

Run by tools/bench/run.py as its own process: DBOS runs workflows inside the application
process, so the generator lives here too and starts each task with ``DBOS.start_workflow``
(the workflow id is the task id). Same shapes as tasksaga: N no-op steps recording their
start and end; a parallel stage runs as child workflows started together and awaited (DBOS's
way to run steps concurrently from a synchronous workflow); the failing variant raises in its
last step, and the workflow compensates the completed steps in reverse order with no-op steps
(DBOS has no built-in compensation: try/except in the workflow is its documented saga idiom),
then re-raises so the workflow ends in ERROR, like tasksaga's TaskFailed.

Durability: the system database is on the same Postgres (fsync and synchronous_commit on);
each step's output is committed before the next step starts.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psycopg
from dbos import DBOS, DBOSConfig, SetWorkflowID

from bench import procstat
from bench.loadgen import TaskRecord, Tracker
from bench.peers.common import log, parse_args, plan_from_json, write_result
from bench.sweep import sweep
from bench.workloads import WORKLOADS, Workload, dispatch_latencies, payload

DBOS_DB = "dbos_bench"


class BenchFailure(Exception):
    """The last step of a failing task, on purpose."""


@DBOS.step()
def bench_step(name: str, data: str, fail: bool) -> list[float]:
    start = time.time()
    if fail:
        raise BenchFailure(f"bench: step {name} fails on purpose")
    return [start, time.time()]


@DBOS.step()
def undo_step(name: str) -> None:
    return None


@DBOS.workflow()
def branch_workflow(name: str, data: str) -> list[float]:
    return bench_step(name, data, False)


@DBOS.workflow()
def saga_workflow(stages: list[list[str]], data: str, fail_last: bool) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    done: list[str] = []
    try:
        for index, stage in enumerate(stages):
            last = index == len(stages) - 1
            if len(stage) == 1:
                times[stage[0]] = bench_step(stage[0], data, last and fail_last)
                done.append(stage[0])
                continue
            handles = [DBOS.start_workflow(branch_workflow, name, data) for name in stage]
            for name, handle in zip(stage, handles, strict=True):
                times[name] = handle.get_result()
                done.append(name)
    except BenchFailure:
        for name in reversed(done):
            undo_step(name)
        raise
    return times


class DbosSystem:
    name = "DBOS"

    def __init__(self, workload: Workload, tracker: Tracker, stack_pids: dict[str, int]) -> None:
        self.workload = workload
        self.tracker = tracker
        self.stack_pids = stack_pids
        self.stages = [list(stage) for stage in workload.stages]
        # start_workflow writes the workflow's status row before it returns: a few sender
        # threads keep the open loop on schedule while those commits are in flight.
        self.senders = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sender")
        self.outcomes: dict[str, str] = {}
        self._lock = threading.Lock()

    def new_task(self, run: str, index: int, intended: float) -> TaskRecord:
        return TaskRecord(f"{run}-{index:06d}", intended, self.workload.fails(index))

    def submit(self, record: TaskRecord) -> None:
        self.senders.submit(self._start, record)

    def _start(self, record: TaskRecord) -> None:
        data = payload(hash(record.task_id))
        with SetWorkflowID(record.task_id):
            handle = DBOS.start_workflow(saga_workflow, self.stages, data, record.fail)
        future: Future[Any] = handle.future  # type: ignore[attr-defined]
        future.add_done_callback(lambda f: self._done(record.task_id, f))

    def _done(self, task_id: str, future: Future[Any]) -> None:
        at = time.time()
        error = future.exception()
        if error is None:
            times = future.result()
            outcome = "completed"
            dispatch = dispatch_latencies(self.workload.stages, times)
        else:
            outcome = "failed" if isinstance(error, BenchFailure) else f"error:{error!r}"
            dispatch = []
        with self._lock:
            self.outcomes[task_id] = outcome
        self.tracker.complete(task_id, at, outcome, dispatch)

    def cpu_groups(self) -> list[procstat.ProcessGroup]:
        groups = [procstat.ProcessGroup(n, p) for n, p in self.stack_pids.items()]
        groups.append(procstat.ProcessGroup("dbos app + generator", os.getpid(), children=False))
        return groups

    def check(self, records: list[TaskRecord], database_url: str) -> list[str]:
        """Status per workflow, and each step (and compensation) ran exactly once."""
        problems: list[str] = []
        expected_steps = self.workload.step_count
        with psycopg.connect(database_url) as conn:
            status: dict[str, str] = dict(conn.execute(
                "SELECT workflow_uuid, status FROM dbos.workflow_status"
                " WHERE workflow_uuid = ANY(%s)", ([r.task_id for r in records],)).fetchall())
            task_ids = {r.task_id for r in records}
            counts: dict[tuple[str, str], int] = {}
            for workflow_id, function, count in conn.execute(
                "SELECT workflow_uuid, function_name, count(*) FROM dbos.operation_outputs"
                " GROUP BY 1, 2"
            ).fetchall():
                # A child workflow's id is its parent's id and "-<call number>".
                task = workflow_id if workflow_id in task_ids else workflow_id.rsplit("-", 1)[0]
                counts[(task, function)] = counts.get((task, function), 0) + count
        for record in records:
            want = "ERROR" if record.fail else "SUCCESS"
            if status.get(record.task_id) != want:
                problems.append(f"{record.task_id}: status {status.get(record.task_id)}, "
                                f"expected {want}")
            ran = sum(n for (w, f), n in counts.items()
                      if w == record.task_id and f.endswith("bench_step"))
            undone = sum(n for (w, f), n in counts.items()
                         if w == record.task_id and f.endswith("undo_step"))
            want_undone = expected_steps - 1 if record.fail else 0
            if ran != expected_steps or undone != want_undone:
                problems.append(f"{record.task_id}: {ran} steps and {undone} compensations "
                                f"recorded, expected {expected_steps} and {want_undone}")
            want_outcome = "failed" if record.fail else "completed"
            if self.outcomes.get(record.task_id) != want_outcome:
                problems.append(f"{record.task_id}: ended {self.outcomes.get(record.task_id)}")
        return problems


def main() -> int:
    args = parse_args(__doc__ or "")
    import json

    workload = WORKLOADS[args.workload]
    database_url = args.database_url
    # DBOS's default executor (unbounded threads): a parent workflow blocks a thread while it
    # awaits its child workflows, so a bounded pool deadlocks the parallel workload.
    config: DBOSConfig = {
        "name": "tasksaga-bench-peer",
        "system_database_url": database_url,
        "log_level": "WARNING",
        "sys_db_pool_size": 20,
    }
    DBOS(config=config)
    DBOS.launch()
    tracker = Tracker()
    system = DbosSystem(workload, tracker, json.loads(args.stack_pids))
    try:
        result = sweep(system, workload, tracker, plan_from_json(args.plan), log)
        records = result["records"]
        assert isinstance(records, list)
        deadline = time.time() + 60
        while time.time() < deadline and any(r.completed is None for r in records):
            time.sleep(0.1)
        problems = system.check(records, database_url)
        log(f"    check: {len(records)} tasks, {len(problems)} problems")
        write_result(args.out, result, problems)
    finally:
        system.senders.shutdown(wait=False, cancel_futures=True)
        DBOS.destroy(workflow_completion_timeout_sec=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
