"""Celery (chains on a Redis broker) under the same open-loop sweep; run by tools/bench/run.py.

Starts its own redis-server (Debian's package) on a project-local port with appendonly yes and
appendfsync always, under .stack/bench/redis, and a Celery worker (prefork, acks late,
prefetch 1). The generator sends each task as a chain with ``apply_async`` from a few sender
threads and pops finished tasks from a Redis list the last step of each chain pushes to.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import redis

from bench import procstat
from bench.loadgen import TaskRecord, Tracker
from bench.peers.common import log, parse_args, plan_from_json, write_result
from bench.sweep import sweep
from bench.workloads import WORKLOADS, Workload, dispatch_latencies, payload

REPO = Path(__file__).resolve().parents[3]
REDIS_DIR = REPO / ".stack" / "bench" / "redis"
REDIS_PORT = 16379
WORKER_CONCURRENCY = 4


def start_redis(port: int = REDIS_PORT) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is missing: apt-get install -y redis-server")
    shutil.rmtree(REDIS_DIR, ignore_errors=True)
    REDIS_DIR.mkdir(parents=True)
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(REDIS_DIR),
         "--appendonly", "yes", "--appendfsync", "always", "--save", "",
         "--protected-mode", "yes", "--daemonize", "no", "--logfile", "redis.log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )
    client = redis.Redis(port=port)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            if client.ping():
                return process
        except redis.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("redis-server did not answer within 20 s")


def start_worker(redis_url: str, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BENCH_REDIS_URL": redis_url,
           "PYTHONPATH": str(REPO / "tools")}
    with log_path.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bench.peers.celery_app", "worker",
             "--pool", "prefork", "--concurrency", str(WORKER_CONCURRENCY), "-Q", "bench",
             "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-O", "fair"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
        )


class CelerySystem:
    name = "Celery"

    def __init__(self, workload: Workload, tracker: Tracker, redis_url: str,
                 pids: dict[str, int]) -> None:
        from bench.peers import celery_app

        self.app = celery_app
        self.workload = workload
        self.tracker = tracker
        self.pids = pids
        self.redis = redis.Redis.from_url(redis_url)
        self.senders = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sender")
        self.reports: dict[str, list[dict[str, Any]]] = {}
        self._stop = threading.Event()
        self._popper = threading.Thread(target=self._pop, name="done-popper", daemon=True)
        self._popper.start()

    def new_task(self, run: str, index: int, intended: float) -> TaskRecord:
        return TaskRecord(f"{run}-{index:06d}", intended, self.workload.fails(index))

    def signature(self, record: TaskRecord) -> Any:
        from celery import chain, chord, group  # type: ignore[import-untyped]

        app = self.app
        data = payload(hash(record.task_id))
        stages = self.workload.stages
        signatures: list[Any] = []
        for index, stage in enumerate(stages):
            last = index == len(stages) - 1
            if len(stage) > 1:
                header = group(app.branch.s(name, data) for name in stage)
                join_stage = stages[index + 1]
                signatures.append(chord(header, app.join.s(join_stage[0], record.task_id, data)))
                break
            fail = last and record.fail
            if not signatures:
                sig = app.step.si({}, stage[0], fail, record.task_id, last, data)
            else:
                sig = app.step.s(stage[0], fail, record.task_id, last, data)
            if fail:
                done = [name for s in stages[:-1] for name in s]
                sig = sig.on_error(app.compensate.s(record.task_id, done))
            signatures.append(sig)
        return chain(*signatures)

    def submit(self, record: TaskRecord) -> None:
        self.senders.submit(self.signature(record).apply_async)

    def _pop(self) -> None:
        while not self._stop.is_set():
            item = self.redis.blpop([self.app.DONE_KEY], timeout=0.2)
            if item is None:
                continue
            at = time.time()
            batch = [item[1], *(self.redis.lpop(self.app.DONE_KEY, 500) or [])]
            for raw in batch:
                report = json.loads(raw)
                self.reports.setdefault(report["id"], []).append(report)
                dispatch: list[float] = []
                if report["outcome"] == "completed":
                    dispatch = dispatch_latencies(self.workload.stages, report["detail"])
                self.tracker.complete(report["id"], at, report["outcome"], dispatch)

    def cpu_groups(self) -> list[procstat.ProcessGroup]:
        groups = [procstat.ProcessGroup(n, p) for n, p in self.pids.items()]
        groups.append(procstat.ProcessGroup("generator", os.getpid(), children=False))
        return groups

    def check(self, records: list[TaskRecord]) -> list[str]:
        problems: list[str] = []
        steps = self.workload.step_names
        for record in records:
            reports = self.reports.get(record.task_id, [])
            if len(reports) != 1:
                problems.append(f"{record.task_id}: {len(reports)} outcome reports")
                continue
            report = reports[0]
            if record.fail:
                want = list(reversed(steps[:-1]))
                if report["outcome"] != "failed" or report["detail"] != want:
                    problems.append(f"{record.task_id}: {report['outcome']} undone "
                                    f"{report['detail']}, expected failed {want}")
            elif report["outcome"] != "completed" or sorted(report["detail"]) != sorted(steps):
                problems.append(f"{record.task_id}: {report['outcome']} with steps "
                                f"{sorted(report['detail'])}")
        left = self.redis.llen("bench")
        if left:
            problems.append(f"{left} messages left in the broker queue")
        return problems

    def close(self) -> None:
        self._stop.set()
        self._popper.join(timeout=2)
        self.senders.shutdown(wait=False, cancel_futures=True)


def _stop(process: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main() -> int:
    args = parse_args(__doc__ or "")
    workload = WORKLOADS[args.workload]
    redis_url = args.redis_url or f"redis://127.0.0.1:{REDIS_PORT}/0"
    os.environ["BENCH_REDIS_URL"] = redis_url
    server = start_redis()
    worker: subprocess.Popen[bytes] | None = None
    system: CelerySystem | None = None
    try:
        worker = start_worker(redis_url, args.out.with_suffix(".worker.log"))
        time.sleep(3)  # the worker's pool processes start and connect
        pids = {**json.loads(args.stack_pids), "redis-server": server.pid,
                "celery worker": worker.pid}
        tracker = Tracker()
        system = CelerySystem(workload, tracker, redis_url, pids)
        if worker.poll() is not None:
            raise RuntimeError(f"the celery worker exited; see {args.out.with_suffix('.log')}")
        result = sweep(system, workload, tracker, plan_from_json(args.plan), log)
        records = result["records"]
        assert isinstance(records, list)
        deadline = time.time() + 60
        while time.time() < deadline and any(r.completed is None for r in records):
            time.sleep(0.1)
        time.sleep(0.5)  # a duplicated report would arrive now
        problems = system.check(records)
        if tracker.duplicates:
            problems.append(f"{tracker.duplicates} duplicated outcome reports")
        log(f"    check: {len(records)} tasks, {len(problems)} problems")
        version = redis.Redis.from_url(redis_url).info("server")["redis_version"]
        write_result(args.out, result, problems, {"redis_version": version,
                                                  "worker_concurrency": WORKER_CONCURRENCY})
    finally:
        if system is not None:
            system.close()
        if worker is not None:
            _stop(worker)
        _stop(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
