"""R5: orchestrators and workers are added and removed every few seconds under load.

Each change rebalances a consumer group (the orchestrators' partitions move with their
tasks; the workers' move with running steps). Nothing may be lost or done twice, and the
work must keep moving: the lag is sampled throughout and every task ends. A second test runs
handlers that sleep past the worker's ``max.poll.interval.ms`` while a peer joins and leaves.
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
                    chaos.services.start("worker#2", {
                        "TASKSAGA_WORKER_INSTANCE_ID": f"{chaos.prefix}-worker-1"})
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


def test_handlers_sleeping_past_the_poll_interval_are_not_run_twice(
    stack_env: dict[str, str],
) -> None:
    """Steps run on the worker's pool while its consumer keeps polling, so a handler that
    outlives ``max.poll.interval.ms`` (7 s here) neither gets its worker evicted nor its
    command handed to another worker, even across a rebalance that moves its partition."""
    tasks = pick(reduced=3, full=8)
    with chaos_system(stack_env, TASKSAGA_WORKER_MAX_POLL_INTERVAL_MS="7000") as chaos:
        ids = [chaos.submit(long_sleep_s=9.0) for _ in range(tasks)]
        accepted = [task_id for task_id in ids if task_id is not None]
        time.sleep(3.0)  # the first steps are running
        # A second worker takes partitions whose steps are mid-sleep.
        chaos.services.start("worker#2",
                             {"TASKSAGA_WORKER_INSTANCE_ID": f"{chaos.prefix}-worker-1"})
        time.sleep(12.0)
        chaos.services.kill("worker#2", signal.SIGTERM)
        statuses = chaos.settle(accepted, timeout_s=120)
        ledger = chaos.ledger(accepted)
        log = chaos.log_problems(accepted)

    figure("R5b", tasks=len(accepted), poll_interval_s=7, handler_sleep_s=9,
           not_completed=sum(1 for s in statuses.values() if s != "Completed"),
           reexecutions=ledger.reexecutions(), same_key_reruns=ledger.same_key_reruns(),
           log_problems=len(log))
    assert len(accepted) == tasks
    assert set(statuses.values()) == {"Completed"}
    assert log == []
    assert ledger.reexecutions() == 0, "a long step was started again"
