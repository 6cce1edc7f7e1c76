"""R2: the step worker dies by SIGKILL, one kill at a time and in bursts, under steady load.

The ledger counts every run of every step. A kill can only make the steps it interrupted run
again: the target (issue 8, defect 6) is under 1% of the run's steps re-executed per kill, where
offsets committed on a timer re-ran seconds of finished work. A step's effect is made under
its stable key, so retries after a kill must not make it twice.
"""

from __future__ import annotations

import time

import pytest

from tests.chaos.harness import chaos_system, figure, not_terminal, percentile, pick

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

RATE_PER_S = 8.0  # tasks per second: ~24 steps/s, half of what this machine's worker sustains


def test_worker_kills_rerun_only_interrupted_steps_and_never_double_an_effect(
    stack_env: dict[str, str],
) -> None:
    single = pick(reduced=2, full=10)
    bursts = pick(reduced=1, full=5)
    burst_size = 3
    kill_times: list[float] = []
    with chaos_system(stack_env) as chaos:
        with chaos.load(rate_per_s=RATE_PER_S, sleep_ms=30):
            time.sleep(4.0)
            for _ in range(single):
                kill_times.append(chaos.kill("worker"))
                chaos.services.start("worker")
                time.sleep(6.0)
            for _ in range(bursts):
                for _ in range(burst_size):
                    kill_times.append(chaos.kill("worker"))
                    chaos.services.start("worker")
                    time.sleep(1.0)
                time.sleep(6.0)
        accepted = list(chaos.accepted)
        statuses = chaos.settle(accepted, timeout_s=180)
        ledger = chaos.ledger(accepted)
        log = chaos.log_problems(accepted)

    kills = len(kill_times)
    steps = ledger.steps_run()
    reruns = ledger.reexecutions()
    per_kill = reruns / kills
    doubled = ledger.doubled_effects()
    doubled_undo = ledger.doubled_effects("compensate")
    latencies = ledger.retry_latencies(kill_times)
    figure("R2", kills=kills, tasks=len(accepted), not_terminal=len(not_terminal(statuses)),
           not_completed=sum(1 for s in statuses.values() if s != "Completed"),
           steps=steps, reexecutions=reruns,
           reexecutions_per_kill=per_kill, per_kill_pct=100.0 * per_kill / max(steps, 1),
           same_key_reruns=ledger.same_key_reruns(), cut_short=len(latencies),
           doubled_effects=len(doubled),
           doubled_compensations=len(doubled_undo),
           retry_latency_p50_s=percentile(latencies, 0.5),
           retry_latency_max_s=max(latencies, default=0.0))
    assert not_terminal(statuses) == {}
    assert sorted(set(statuses.values())) == ["Completed"]
    assert log == []
    assert doubled == [], f"effects made twice for one step: {doubled[:5]}"
    assert doubled_undo == []
    assert per_kill < 0.01 * steps, (
        f"{per_kill:.1f} step re-executions per kill, {100 * per_kill / steps:.1f}% of "
        f"{steps} steps (target < 1%)")

