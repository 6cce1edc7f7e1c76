"""A real step-worker process killed with SIGKILL under load re-runs (almost) nothing.

The test plays the orchestrator: it produces ExecuteStep commands at a steady rate while the
worker runs them; each finished execution appends its step key to a ledger file. The worker is
killed twice mid-stream and replaced. Every command must be answered, and the effects done
twice (ledger lines beyond one per step) are the re-executions the kills caused: with offsets
committed as results are acknowledged, only a step caught between its effect and its result's
acknowledgement can run again (with the former 5 s commit timer, a kill re-ran ~5 s of work).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import KafkaProducer
from tasksaga.adapters.wire import Topics
from tasksaga.core import messages as msg
from tests.integration import worker_probe as probe
from tests.integration.worker_probe import ProbeRequest

STEPS = 600
RATE_PER_S = 100  # half of what one worker with 4 threads of 20 ms steps can do
KILLS = 2


def _ledger_lines(ledger: Path) -> list[str]:
    return ledger.read_text().splitlines() if ledger.exists() else []


@pytest.mark.parametrize("static_membership", [False, True], ids=["dynamic", "static"])
def test_a_killed_worker_re_runs_under_one_percent_of_the_steps(
    stack_env: dict[str, str], kafka_bootstrap: str, codec: AvroCodec, topic_prefix: str,
    tmp_path: Path, static_membership: bool,
) -> None:
    from localrun import REPO, ServiceProcesses, service_env

    topics = Topics(topic_prefix)
    probe.ensure_probe_topics(kafka_bootstrap, topics, partitions=4)
    ledger = tmp_path / "ledger.txt"
    env = service_env(stack_env, 0, TASKSAGA_TOPIC_PREFIX=topic_prefix,
                      TASKSAGA_TOPIC_PARTITIONS="4",
                      TASKSAGA_TASK_MODULES="tests.integration.worker_probe",
                      TASKSAGA_WORKER_QUEUES=probe.QUEUE, TASKSAGA_WORKER_CONCURRENCY="4",
                      # The tree under test first: its contracts are the ones read.
                      PYTHONPATH=os.pathsep.join(str(p) for p in (REPO / "services", REPO)),
                      TASKSAGA_WORKER_INSTANCE_ID="probe-0" if static_membership else "")
    services = ServiceProcesses(env, tmp_path / "logs", api_port=0)
    producer = KafkaProducer(kafka_bootstrap, "kill-test")
    request = ProbeRequest(sleep_s=0.02, ledger=str(ledger))

    def feed() -> None:
        for index in range(STEPS):
            probe.send(producer, codec, topics, probe.command(f"k-{index}", request))
            time.sleep(1 / RATE_PER_S)

    feeder = threading.Thread(target=feed, daemon=True)
    services.start("worker")
    feeder.start()
    resumed_after: list[float] = []
    try:
        for kill in range(1, KILLS + 1):
            deadline = time.monotonic() + 60
            while (len(_ledger_lines(ledger)) < kill * STEPS // (KILLS + 1)
                   and time.monotonic() < deadline):
                time.sleep(0.05)
            services.kill("worker")  # SIGKILL mid-stream
            killed_at, done_at_kill = time.monotonic(), len(_ledger_lines(ledger))
            services.start("worker")
            while len(_ledger_lines(ledger)) <= done_at_kill and time.monotonic() < deadline:
                time.sleep(0.05)
            resumed_after.append(time.monotonic() - killed_at)
        feeder.join(60)
        envelopes = probe.read_envelopes(kafka_bootstrap, codec, topics.step_results, STEPS,
                                         timeout_s=120, settle_s=3)
    finally:
        services.stop_all()
    answered = {e.payload.task_id for e in envelopes if isinstance(e.payload, msg.StepSucceeded)}
    effects = Counter(line.split(":")[0] for line in _ledger_lines(ledger))
    re_executions = sum(count - 1 for count in effects.values())
    per_kill = re_executions / KILLS
    print(f"\nworker SIGKILL x{KILLS} at {RATE_PER_S} steps/s, {STEPS} steps: "
          f"{re_executions} re-executions ({per_kill:.1f} per kill, "
          f"{100 * per_kill / STEPS:.2f}% of the steps per kill); work resumed "
          f"{', '.join(f'{s:.1f}' for s in resumed_after)} s after each kill "
          f"({'static' if static_membership else 'dynamic'} membership)")
    assert answered == {f"k-{i}" for i in range(STEPS)}  # nothing lost
    assert per_kill < STEPS / 100
