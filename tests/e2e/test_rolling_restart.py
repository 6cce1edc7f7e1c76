"""A rolling restart of every service while tasks run, one process at a time, the way
Kubernetes rolls the chart's workloads (deploy/README.md, "Rolling updates"): each old
process gets SIGTERM and must drain and exit 0 by itself.

- worker and notifier (Deployments, maxSurge 1): the new process starts and is ready before
  the old one is stopped;
- orchestrator (StatefulSet): the old process stops, the new one starts with the same
  instance id (static membership);
- api: stopped then started on its port (submissions in the gap are refused, not lost).

Nothing accepted is lost or doubled (the event log: no duplicated transition, every task
terminal), and no step runs more often than its retry policy allows (the chaos ledger).
"""

from __future__ import annotations

import signal
import time
from collections import Counter

import psycopg
import pytest

from tests.chaos.harness import Chaos, chaos_system, figure, not_terminal
from tests.chaos.ledger_tasks import ChaosSaga
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.e2e

# The longest a drain may take: the worker's default TASKSAGA_WORKER_SHUTDOWN_SECONDS (20 s)
# plus the threads' join slack (5 s); a clean stop of the others is far shorter.
DRAIN_LIMIT_S = 25.0
RUNS_ALLOWED = 1 + ChaosSaga.default_retry.max_retries
LOAD_S = 10.0  # submissions at 4/s: 40, less those refused while the api restarts


def start_ready_later(chaos: Chaos, name: str, **env: str) -> None:
    """Start a surge process (its readiness is awaited before its predecessor stops)."""
    chaos.services.metrics_ports[name] = free_port()
    chaos.services.start(name, env)


def stop(chaos: Chaos, name: str) -> tuple[int, float]:
    started = time.monotonic()
    code = chaos.services.terminate(name, timeout_s=DRAIN_LIMIT_S + 10)
    return code, time.monotonic() - started


def when_a_step_runs_on(chaos: Chaos, pid: int, timeout_s: float = 15.0) -> None:
    """Return once the process has a step started and not finished (SIGTERM lands mid-step)."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(chaos.database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute(
                    "SELECT 1 FROM chaos_ledger s WHERE s.kind = 'start' AND s.pid = %s"
                    " AND s.started_at > clock_timestamp() - interval '150 milliseconds'"
                    " AND NOT EXISTS (SELECT 1 FROM chaos_ledger e WHERE e.kind = 'execute'"
                    " AND e.idempotency_key = s.idempotency_key AND e.attempt = s.attempt)",
                    (pid,)).fetchone():
                return
            time.sleep(0.02)
    raise AssertionError(f"no step started on process {pid} within {timeout_s} s")


def finished_after(chaos: Chaos, pid: int, moment: float) -> int:
    """Steps the process had started before ``moment`` and finished after it."""
    with psycopg.connect(chaos.database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM chaos_ledger WHERE kind = 'execute' AND pid = %s"
            " AND started_at < to_timestamp(%s) AND ended_at > to_timestamp(%s)",
            (pid, moment, moment)).fetchone()
    return int(row[0]) if row else 0


def stopped_cleanly(chaos: Chaos, name: str, code: int) -> bool:
    """Exit 0; the api's uvicorn re-raises SIGTERM once its graceful shutdown is over (-15),
    so for it the log must show that shutdown finished."""
    if name != "api" or code != -signal.SIGTERM:
        return code == 0
    return "Finished server process" in chaos.services.log_tail(name, lines=5)


def test_rolling_restart_of_every_service_loses_doubles_and_reruns_nothing(
    stack_env: dict[str, str],
) -> None:
    stops: dict[str, tuple[int, float]] = {}
    # The finished-steps guard off: a drain that failed to commit would show as re-runs.
    with chaos_system(stack_env, TASKSAGA_WORKER_SKIP_FINISHED="false") as chaos:
        with chaos.load(rate_per_s=4.0, sleep_ms=300):
            load_started = time.monotonic()
            # helm upgrade rolls every workload at once, each one pod at a time: the surge
            # processes of the Deployments boot while the old processes stop, one by one.
            start_ready_later(chaos, "worker#2",
                              TASKSAGA_WORKER_INSTANCE_ID=f"{chaos.prefix}-worker-1")
            start_ready_later(chaos, "notifier#2")
            time.sleep(1.0)
            stops["orchestrator"] = stop(chaos, "orchestrator")
            chaos.services.start("orchestrator")  # same instance id: the pod's name
            stops["api"] = stop(chaos, "api")
            chaos.services.start("api")
            chaos.services.wait_until_ready()
            chaos.services.wait_ops_ready("worker#2")
            old_worker = chaos.services.processes["worker"].pid
            when_a_step_runs_on(chaos, old_worker)
            worker_sigterm = time.time()
            stops["worker"] = stop(chaos, "worker")
            chaos.services.wait_ops_ready("notifier#2")
            stops["notifier"] = stop(chaos, "notifier")
            # At least LOAD_S of submissions however fast the roll went, and a second after it.
            time.sleep(max(load_started + LOAD_S - time.monotonic(), 1.0))
        accepted = list(chaos.accepted)
        statuses = chaos.settle(accepted, timeout_s=60)
        problems = chaos.log_problems(accepted)
        ledger = chaos.ledger(accepted)
        drained = finished_after(chaos, old_worker, worker_sigterm)

    starts = Counter((run.task_id, run.step) for run in ledger.executions("start"))
    figure("rolling-restart", tasks=len(accepted), refused=len(chaos.refused),
           not_completed=sum(1 for s in statuses.values() if s != "Completed"),
           reexecutions=ledger.reexecutions(), same_key_reruns=ledger.same_key_reruns(),
           most_runs_of_a_step=max(starts.values(), default=0), log_problems=len(problems),
           steps_drained_by_the_old_worker=drained,
           **{f"{name}_drain_s": round(seconds, 2) for name, (_, seconds) in stops.items()})
    unclean = {name: code for name, (code, _) in stops.items()
               if not stopped_cleanly(chaos, name, code)}
    assert unclean == {}, "a service did not stop cleanly on SIGTERM"
    assert all(seconds < DRAIN_LIMIT_S for _, seconds in stops.values()), stops
    assert len(accepted) >= 15  # a real load ran through the roll
    assert drained >= 1, "the stopped worker's running step did not finish after SIGTERM"
    assert not_terminal(statuses) == {}
    assert set(statuses.values()) == {"Completed"}
    assert problems == []
    assert ledger.doubled_effects() == []
    assert ledger.same_key_reruns() == 0, "a command ran twice (two owners, or a lost commit)"
    assert max(starts.values()) <= RUNS_ALLOWED
