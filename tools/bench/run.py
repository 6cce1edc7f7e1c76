#!/usr/bin/env python3
"""`make bench`: tasksaga against DBOS and Celery, open loop, same machine, same durability.

    .venv/bin/python tools/bench/run.py                 # the full run (~35 min)
    .venv/bin/python tools/bench/run.py --quick         # a smoke run (~3 min, linear3 only)
    .venv/bin/python tools/bench/run.py --only ours     # ours|dbos|celery|replay|recovery|profile
    .venv/bin/python tools/bench/run.py --only shards --quick   # linear3 on one shard, then on two
    .venv/bin/python tools/bench/run.py --only extra --quick    # scale-out, payloads, fan-out, ...
    .venv/bin/python tools/bench/run.py --only extra --extra fanout,cost   # some of them
    .venv/bin/python tools/bench/run.py --workloads linear3,fail10

Installs what it needs on first use (pinned: matplotlib, dbos, celery[redis], redis, py-spy
into the virtualenv; redis-server from Debian's packages), starts the local stack, then for each
workload sweeps tasksaga, DBOS and Celery one after the other, replays a 1M-event log, kills
orchestrators under load, profiles the orchestrator, runs linear3 on one event store shard then
on two (a throwaway second PostgreSQL cluster), checks every run's correctness, prints the
tables and writes them with the plot and the raw results under .run/bench/ (the full run also
writes docs/benchmarks-throughput-p99.png).
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parents[1]
REPO = TOOLS.parent
sys.path.insert(0, str(TOOLS))

PINNED = {
    "matplotlib": "3.11.2",
    "dbos": "3.4.0",
    "celery": "5.7.0",
    "redis": "8.1.0",
    "py-spy": "0.4.3",
}
PIP_SPECS = ["matplotlib==3.11.2", "dbos==3.4.0", "celery[redis]==5.7.0", "redis==8.1.0",
             "py-spy==0.4.3"]
OUT = REPO / ".run" / "bench"
PLOT = REPO / "docs" / "benchmarks-throughput-p99.png"
PARTS = ("ours", "dbos", "celery", "replay", "recovery", "profile", "shards", "extra")


def log(line: str) -> None:
    print(line, flush=True)


def ensure_tools() -> None:
    """Install the peers and the plotting library on first use (pinned versions)."""
    missing = []
    for name, version in PINNED.items():
        try:
            if importlib.metadata.version(name) != version:
                missing.append(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        log(f"== installing {', '.join(missing)} into {sys.prefix} (pinned, first run only)")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *PIP_SPECS],
                       check=True)
    if shutil.which("redis-server") is None:
        log("== installing redis-server from Debian's packages (first run only)")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "redis-server"], check=True,
                       env=env)
        # Debian's package may start a system instance; the bench runs its own on its port.


def versions(stack_env: dict[str, str]) -> dict[str, str]:
    import confluent_kafka
    import psycopg

    import stack_tool

    found: dict[str, str] = {"python": platform.python_version(),
                             "kafka": stack_tool.KAFKA_VERSION,
                             "librdkafka": confluent_kafka.libversion()[0]}
    with psycopg.connect(stack_env["TASKSAGA_DATABASE_URL"]) as conn:
        for setting in ("server_version", "fsync", "synchronous_commit", "wal_sync_method",
                        "shared_buffers"):
            row = conn.execute(f"SHOW {setting}").fetchone()
            found[f"postgres {setting}"] = str(row[0]) if row else "?"
    for package in ("confluent-kafka", "fastavro", "psycopg", "pydantic", "dbos", "celery",
                    "kombu", "redis", "SQLAlchemy", "matplotlib", "py-spy"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    redis_server = shutil.which("redis-server")
    if redis_server:
        found["redis-server"] = subprocess.run(
            [redis_server, "--version"], capture_output=True, text=True).stdout.split()[2]
    return found


def machine() -> dict[str, str]:
    def run(*command: str) -> str:
        try:
            return subprocess.run(command, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"commit": run("git", "-C", str(REPO), "rev-parse", "--short", "HEAD"),
            "services changed since the commit": run(
                "git", "-C", str(REPO), "status", "--short", "services") or "no",
            "nproc": run("nproc"), "cpu": model, "memory": run("free", "-h").splitlines()[1],
            "kernel": platform.release(), "loadavg at start": Path("/proc/loadavg").read_text()
            .strip()}


def stack_pids() -> dict[str, int]:
    import stack_tool

    # Each server's own idea of its pid (Postgres: postmaster.pid), never a pid file alone:
    # a stale one would put the database's CPU under "other processes".
    pids = {}
    for service in stack_tool.services(stack_tool.Settings.from_env()):
        pid = service.pid()
        if service.name in ("kafka", "postgres", "minio") and pid is not None:
            pids[service.name] = pid
    return pids


def run_ours(key: str, stack_env: dict[str, str], plan: Any) -> dict[str, Any]:
    from bench.loadgen import Tracker
    from bench.ours import BENCH_DB, OursSystem, recreate_database, sweep_and_check
    from bench.workloads import WORKLOADS

    db_url = recreate_database(stack_env["TASKSAGA_DATABASE_URL"], BENCH_DB)
    system = OursSystem(stack_env, db_url, OUT / "logs", WORKLOADS[key], Tracker(),
                        stack_pids=stack_pids())
    return sweep_and_check(system, plan, log)


def run_peer(peer: str, key: str, stack_env: dict[str, str], plan: Any) -> dict[str, Any]:
    from bench.ours import recreate_database
    from bench.peers.common import plan_to_json

    script = TOOLS / "bench" / "peers" / f"{peer}_bench.py"
    out = OUT / f"{peer}-{key}.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, str(script), "--workload", key, "--plan", plan_to_json(plan),
               "--out", str(out), "--stack-pids", json.dumps(stack_pids())]
    if peer == "dbos":
        command += ["--database-url",
                    recreate_database(stack_env["TASKSAGA_DATABASE_URL"], "dbos_bench")]
    process = subprocess.Popen(command, cwd=REPO)
    try:
        returncode = process.wait(timeout=1800)
    except BaseException:
        process.send_signal(signal.SIGINT)  # its finally blocks stop its servers
        process.wait(timeout=60)
        raise
    if returncode != 0 or not out.exists():
        return {"error": f"{peer} exited with {returncode}"}
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def run_profile(stack_env: dict[str, str], rate: float, seconds: float) -> dict[str, Any]:
    import threading

    from bench import loadgen, profile
    from bench.loadgen import StepPlan, Tracker
    from bench.ours import BENCH_DB, OursSystem, recreate_database
    from bench.workloads import WORKLOADS

    workload = WORKLOADS["linear3"]
    db_url = recreate_database(stack_env["TASKSAGA_DATABASE_URL"], BENCH_DB)
    tracker = Tracker()
    system = OursSystem(stack_env, db_url, OUT / "logs", workload, tracker,
                        stack_pids=stack_pids())
    system.start()
    found: dict[str, Any] = {"rate": rate, "workload": workload.key}
    try:
        pid = system.services.processes["orchestrator"].pid

        def spy() -> None:
            time.sleep(3)
            for mode in ("cpu", "idle"):
                raw = profile.record(pid, seconds, OUT / f"profile-{mode}.txt", mode == "idle")
                if raw is not None:
                    result = profile.aggregate(raw.read_text().splitlines())
                    found[mode] = {"samples": result.samples, "threads": result.threads,
                                   "self_top": result.self_top,
                                   "inclusive_top": result.inclusive_top}

        spying = threading.Thread(target=spy, daemon=True)
        spying.start()
        step = loadgen.run_rate_step(
            system, tracker, StepPlan(rate, 2.0, 2 * seconds + 4, abort_backlog_s=30),
            lambda i, t: system.new_task("prof", i, t), lambda r: workload.step_executions(r.fail),
            log)
        spying.join(timeout=2 * seconds + 60)
        found["achieved"] = step.achieved
        found["cpu_shares"] = step.cpu
        log(f"  profile at {rate:.1f} tasks/s (achieved {step.achieved:.1f}/s): "
            f"orchestrator CPU {step.cpu.get('orchestrator', 0):.2f} cores")
    finally:
        system.stop()
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: linear3, few points")
    parser.add_argument("--only", action="append", choices=PARTS,
                        help="run only this part (repeatable)")
    parser.add_argument("--workloads", default="", help="comma-separated workload keys")
    parser.add_argument("--extra", default="",
                        help="comma-separated shapes of the extra part (default: all of "
                             "scale,payload,fanout,waiting,cost)")
    parser.add_argument("--tag", default="", help="name the results: results-TAG.json")
    parser.add_argument("--warm-up-s", type=float, default=240.0,
                        help="longest warm-up of Kafka's JIT before measuring (0: none)")
    parser.add_argument("--linear3-max", type=float, default=0.0,
                        help="tasksaga's linear3 maximum (tasks/s) when this run does not "
                             "measure it: recovery runs at half of it, the profile at 90%%")
    args = parser.parse_args()
    started = time.time()

    def interrupted(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # run the finally blocks: stop the services we started

    signal.signal(signal.SIGTERM, interrupted)
    OUT.mkdir(parents=True, exist_ok=True)
    lock = (OUT / "bench.lock").open("w")
    try:  # two runs at once would measure each other (and share the bench databases)
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log(f"another bench run holds {OUT / 'bench.lock'}; wait for it to finish")
        return 2
    parts = set(args.only or PARTS)
    if parts - {"shards", "extra"}:  # these phases need neither the peers nor the plot
        ensure_tools()

    import stack_tool
    from bench import procstat, report
    from bench.sweep import SweepPlan
    from bench.workloads import WORKLOADS

    quick = args.quick
    keys = [k for k in args.workloads.split(",") if k] or (
        ["linear3"] if quick else list(WORKLOADS))
    if quick:
        plan = SweepPlan(warmup_s=1.5, measure_s=4.0, probe_transitions_per_s=0,
                         max_points=3, drain_s=20.0)
    else:
        plan = SweepPlan(warmup_s=3.0, measure_s=8.0, probe_transitions_per_s=0,
                         max_points=4, drain_s=30.0)
    probes = {"ours": 600.0, "dbos": 1500.0, "celery": 3000.0}

    log("== local stack (Kafka, Postgres, MinIO)")
    stack_tool.up()
    stack_env = stack_tool.env()
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "meta": {"quick": quick, "tag": args.tag,
                 "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                 "machine": machine(), "versions": versions(stack_env),
                 "plan": {"warmup_s": plan.warmup_s, "measure_s": plan.measure_s,
                          "max_points": plan.max_points, "probes": probes}},
        "sweeps": {},
    }
    log(f"   machine: {results['meta']['machine']}")
    if args.warm_up_s > 0 and parts - {"replay"}:
        from bench.warmup import warm_kafka

        log("== warm-up: linear3 until the Kafka broker's JIT compiler settles (not measured)")
        results["meta"]["kafka_warm_up"] = warm_kafka(
            stack_env, stack_pids(), OUT / "logs", log,
            max_s=min(args.warm_up_s, 60.0) if quick else args.warm_up_s)
        log(f"   {results['meta']['kafka_warm_up']}")
    from dataclasses import replace

    for key in keys if parts & {"ours", "dbos", "celery"} else []:
        by_system: dict[str, Any] = {}
        results["sweeps"][key] = by_system
        log(f"== {key}: {WORKLOADS[key].title}")
        for part, system in (("ours", "tasksaga"), ("dbos", "DBOS"), ("celery", "Celery")):
            if part not in parts:
                continue
            background = procstat.wait_for_quiet(0.4, 20.0 if quick else 90.0, log)
            system_plan = replace(plan, probe_transitions_per_s=probes[part])
            if part == "ours":
                by_system[system] = run_ours(key, stack_env, system_plan)
            else:
                by_system[system] = run_peer(part, key, stack_env, system_plan)
            by_system[system]["background_cores_before"] = round(background, 2)
            _save(results, args.tag)
    if not results["sweeps"] or not any(results["sweeps"].values()):
        results.pop("sweeps")

    if "replay" in parts:
        from bench import replay_bench

        log("== replay")
        events = 50_000 if quick else 1_000_000
        db_url = replay_bench.ensure_log(stack_env["TASKSAGA_DATABASE_URL"], events, log)
        results["replay"] = replay_bench.measure(db_url, events, log)
        _save(results, args.tag)

    linear3 = (results.get("sweeps") or {}).get("linear3", {}).get("tasksaga") or {}
    max_linear3 = float(linear3.get("max_rate") or args.linear3_max or 20.0)
    if "recovery" in parts:
        from bench.ours import BENCH_DB, recreate_database
        from bench.recovery import run_recovery

        log(f"== recovery: kill -9 of the orchestrator under load ({max_linear3 / 2:.0f}/s)")
        db_url = recreate_database(stack_env["TASKSAGA_DATABASE_URL"], BENCH_DB)
        results["recovery"] = run_recovery(
            stack_env, db_url, OUT / "logs", max_linear3 / 2, 3.0 if quick else 5.0,
            stack_pids(), log, tail_s=14.0 if quick else 20.0)
        _save(results, args.tag)

    if "profile" in parts and not quick:
        log("== profile of the orchestrator (py-spy) on linear3 near its maximum")
        results["profile"] = run_profile(stack_env, max_linear3 * 0.9, 10.0)
        _save(results, args.tag)

    if "shards" in parts:
        from bench.shard_phase import run_shard_phase

        procstat.wait_for_quiet(0.4, 20.0 if quick else 90.0, log)
        results["shards"] = run_shard_phase(
            stack_env, replace(plan, probe_transitions_per_s=probes["ours"]), stack_pids(),
            OUT / "logs", log)
        _save(results, args.tag)

    if "extra" in parts:
        from bench import extra_phase

        results["extra"] = extra_phase.run_extra_phase(
            extra_phase.Env(stack_env, stack_pids(), OUT / "logs", log,
                            linear3_max=float(linear3.get("max_rate") or args.linear3_max)
                            or None),
            extra_phase.ExtraPlan.quick() if quick else extra_phase.ExtraPlan.full(),
            tuple(p for p in args.extra.split(",") if p) or extra_phase.EXTRA_PARTS,
            lambda: procstat.wait_for_quiet(0.4, 20.0 if quick else 90.0, log))
        _save(results, args.tag)

    results["meta"]["duration_s"] = round(time.time() - started)
    tables = report.render(results)
    print()
    print(tables)
    suffix = f"-{args.tag}" if args.tag else ""
    (OUT / f"tables{suffix}.md").write_text(tables + "\n")
    if results.get("sweeps"):
        plot_path = report.plot(results["sweeps"], OUT / f"throughput-p99{suffix}.png")
        if plot_path is not None and not quick and not args.only and not args.workloads:
            shutil.copyfile(plot_path, PLOT)
            log(f"plot: {PLOT}")
        elif plot_path is not None:
            log(f"plot: {plot_path}")
    _save(results, args.tag)
    log(f"== bench done in {results['meta']['duration_s']} s; results in {OUT}")
    failed = [f"{k}/{s}" for k, by in (results.get("sweeps") or {}).items()
              for s, r in by.items() if r.get("check_problem_count") or r.get("error")]
    failed += [f"shards/{k}" for k, r in (results.get("shards") or {}).items()
               if isinstance(r, dict) and r.get("check_problem_count")]
    if results.get("extra"):
        from bench.extra_phase import failed_parts

        failed += failed_parts(results["extra"])
    for scenario in ("restart", "takeover"):
        if "check_failed" in (results.get("recovery") or {}).get(scenario, {}):
            failed.append(f"recovery/{scenario}")
    if failed:
        log(f"CHECK FAILED (no figures reported for): {', '.join(failed)}")
        return 1
    return 0


def _save(results: dict[str, Any], tag: str = "") -> None:
    name = f"results-{tag}.json" if tag else "results.json"
    (OUT / name).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
