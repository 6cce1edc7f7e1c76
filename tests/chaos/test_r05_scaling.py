"""R5: orchestrators and workers are added and removed every few seconds under load.

Each change rebalances a consumer group (the orchestrators' partitions move with their
tasks; the workers' move with running steps). Nothing may be lost or done twice, and the
work must keep moving: the lag is sampled throughout and every task ends.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest

from tasksaga.adapters.wire import Topics
from tests.chaos.harness import chaos_system, figure, not_terminal, pick
from tests.chaos.kafka_tools import lag

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]


@pytest.mark.xfail(
    reason="known failure, open in issue 8 (docs/reliability.md, R5): nothing lost and no effect "
           "doubled, but a rebalance can still let two workers start one attempt of a step "
           "(2 same-key re-runs), and stopping a worker mid-rebalance once took over 30 s; "
           "reported as XFAIL until fixed, never skipped", strict=False)
def test_adding_and_removing_orchestrators_and_workers_loses_and_doubles_nothing(
    stack_env: dict[str, str],
) -> None:
    changes = pick(reduced=4, full=30)
    period_s = pick(reduced=4, full=10)
    bootstrap = stack_env["TASKSAGA_KAFKA_BOOTSTRAP"]
    peak_lag = 0
    sampling = threading.Event()
    with chaos_system(stack_env) as chaos:
        topics = Topics(chaos.prefix)
        groups = {f"{chaos.prefix}-orchestrator": [topics.task_commands, topics.step_results],
                  f"{chaos.prefix}-worker-chaos": [topics.step_commands("chaos")]}

        def sample() -> None:
            nonlocal peak_lag
            while not sampling.wait(1.0):
                peak_lag = max(peak_lag, sum(lag(bootstrap, g, t) for g, t in groups.items()))

        sampler = threading.Thread(target=sample, name="r5-lag", daemon=True)
        sampler.start()
        with chaos.load(rate_per_s=5.0, sleep_ms=100):
            time.sleep(period_s)
            for index in range(changes):
                # Alternate: add a second orchestrator and worker, then stop them gracefully
                # (kills are R1's and R2's: here every run of a step under one attempt beyond
                # the first is two owners at once).
                if index % 2 == 0:
                    chaos.services.start("orchestrator#2", {
                        "TASKSAGA_ORCHESTRATOR_INSTANCE_ID": f"{chaos.prefix}-orchestrator-1"})
                    chaos.services.start("worker#2")
                else:
                    chaos.services.kill("orchestrator#2", signal.SIGTERM)
                    chaos.services.kill("worker#2", signal.SIGTERM)
                time.sleep(period_s)
        sampling.set()
        sampler.join(timeout=30)
        accepted = list(chaos.accepted)
        statuses = chaos.settle(accepted, timeout_s=180)
        log = chaos.log_problems(accepted)
        ledger = chaos.ledger(accepted)

    figure("R5", changes=changes, period_s=period_s, tasks=len(accepted),
           not_terminal=len(not_terminal(statuses)),
           not_completed=sum(1 for s in statuses.values() if s != "Completed"),
           peak_lag=peak_lag, reexecutions=ledger.reexecutions(),
           same_key_reruns=ledger.same_key_reruns(),
           doubled_effects=len(ledger.doubled_effects()), log_problems=len(log))
    assert not_terminal(statuses) == {}
    assert set(statuses.values()) == {"Completed"}
    assert log == []
    assert ledger.doubled_effects() == []
    assert ledger.same_key_reruns() == 0, "a step ran twice under one attempt (two owners)"
