"""R3: brokers of the three-broker cluster (`tools/stack up --brokers 3`: replication factor 3,
min.insync.replicas 2) are stopped with SIGTERM, then killed with SIGKILL, and restarted, under
load: three rounds at full scale (`make chaos`), one SIGKILL at the reduced scale (`pytest
tests/chaos`; `make test` leaves R3 out for time).

No submission the API acknowledged may be missing afterwards; the figure is the longest time
without an acknowledged submission after each fault (the unavailability window).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import stack_tool
from tasksaga.adapters.wire import Topics
from tests.chaos.harness import chaos_system, figure, not_terminal, scale
from tests.chaos.kafka_tools import partition_lags

STACK = Path(__file__).resolve().parents[2] / "tools" / "stack"

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]


@pytest.fixture
def cluster_env(stack_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The shared stack's three-broker cluster (beside its single broker, sharing Postgres
    and MinIO), stopped again afterwards. It starts empty: every run creates its own topics,
    and a node restarted after SIGKILL recovers every log it holds before it is ready (the
    topics of earlier runs made that exceed the stack's 180 s readiness timeout)."""
    settings = stack_tool.Settings.from_env().with_brokers(3)
    stack_tool.reset(settings)
    stack_tool.up(settings)
    try:
        yield {**stack_env, **stack_tool.env(settings)}
    finally:
        stack_tool.down(settings)


def _broker_pid(node: str) -> int:
    pid = stack_tool.status(stack_tool.Settings.from_env().with_brokers(3))[node]["pid"]
    assert isinstance(pid, int), f"{node} is not running"
    return pid


def _restart_with_the_cli(node: str) -> None:
    """`tools/stack up --brokers 3`, as an operator types it, starts only the stopped node."""
    done = subprocess.run([sys.executable, str(STACK), "up", "--brokers", "3"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("(already running)") == 4, done.stdout  # 2 nodes, PG, MinIO
    assert f"{node}   up" in done.stdout and "(started)" in done.stdout, done.stdout


def _replica_counts(bootstrap: str, topic: str) -> list[int]:
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return [len(p.replicas) for p in metadata.topics[topic].partitions.values()]


def _wait_gone(node: str, timeout_s: float) -> None:
    """Until the process has exited: a broker stopping gracefully closes its port long before
    its JVM ends, and `up` takes a live process for a running server."""
    settings = stack_tool.Settings.from_env().with_brokers(3)
    deadline = time.monotonic() + timeout_s
    while stack_tool.status(settings)[node]["pid"] is not None:
        assert time.monotonic() < deadline, f"{node} did not stop within {timeout_s:.0f} s"
        time.sleep(0.5)


def test_broker_stops_and_kills_lose_no_acknowledged_submission(
    cluster_env: dict[str, str],
) -> None:
    assert cluster_env["TASKSAGA_TOPIC_REPLICATION_FACTOR"] == "3"
    assert cluster_env["TASKSAGA_TOPIC_MIN_INSYNC_REPLICAS"] == "2"
    if scale() == "full":  # three rounds of a graceful stop and a kill
        faults = [fault for index in range(3) for fault in (
            (f"kafka-{1 + index % 3}", signal.SIGTERM),
            (f"kafka-{1 + (index + 1) % 3}", signal.SIGKILL))]
    else:  # reduced: one kill, the harsher fault (a leader lost without handing over)
        faults = [("kafka-2", signal.SIGKILL)]
    windows: list[float] = []
    with chaos_system(cluster_env) as chaos, chaos.supervised() as restarts:
        first = None
        deadline = time.monotonic() + 60
        while first is None and time.monotonic() < deadline:  # 503 while topics are created
            first = chaos.submit()
            if first is None:
                time.sleep(1.0)
        assert first is not None, f"the fresh cluster accepted no submission: {chaos.refused[-3:]}"
        chaos.refused.clear()
        # The services created their topics with the cluster's replication factor.
        assert set(_replica_counts(cluster_env["TASKSAGA_KAFKA_BOOTSTRAP"],
                                   Topics(chaos.prefix).task_commands)) == {3}
        warm = chaos.settle([first], timeout_s=60)[first]
        assert warm == "Completed", (
            f"a first task on the fresh cluster is {warm} after 60 s (before any fault): "
            "a consumer that subscribed before its topic reached every broker's metadata "
            "waits for the next metadata refresh (see the orchestrator's log)")
        with chaos.load(rate_per_s=5.0 if scale() == "full" else 3.0, sleep_ms=20):
            time.sleep(4.0)
            for node, sig in faults:
                at = time.time()
                os.kill(_broker_pid(node), sig)
                time.sleep(8.0)
                windows.append(chaos.unavailability_s(at, time.time()))
                _wait_gone(node, timeout_s=90)  # a graceful stop may still be running
                _restart_with_the_cli(node)
                time.sleep(4.0)
        accepted = list(chaos.accepted)
        statuses = chaos.settle(accepted, timeout_s=180, check_alive=False)
        with psycopg.connect(chaos.database_url, autocommit=True) as conn:
            logged = {r[0] for r in conn.execute(
                "SELECT stream_id FROM events WHERE version = 1 AND stream_id = ANY(%s)",
                (accepted,)).fetchall()}
        log = chaos.log_problems(accepted)
        missing = [t for t in accepted if t not in logged]
        if missing:  # where the orchestrator stopped, for the reader of a failed run
            topics = Topics(chaos.prefix)
            print("orchestrator lag by partition:", partition_lags(
                cluster_env["TASKSAGA_KAFKA_BOOTSTRAP"], f"{chaos.prefix}-orchestrator",
                [topics.task_commands, topics.step_results]))
            print("restarted:", restarts)
            for name in ("orchestrator", "api"):
                lines = chaos.services.log_tail(name, 2000).splitlines()
                ours = [line for line in lines if not line.startswith("%")]  # librdkafka's
                print(f"--- {name} log tail ---", *ours[-40:], sep="\n")

    figure("R3", faults=len(windows), accepted=len(accepted), refused=len(chaos.refused),
           acked_but_missing=len(missing), not_terminal=len(not_terminal(statuses)),
           unavailability_max_s=max(windows), service_restarts=len(restarts),
           log_problems=len(log))
    if log:
        print("first log problems:", *log[:3], sep="\n  ")
    assert missing == []
    assert not_terminal(statuses) == {}
    assert set(statuses.values()) == {"Completed"}
    assert log == []
    # No service may die of a broker fault: each restart here was a crash (librdkafka#5315
    # killed the orchestrator's lag watch once per fault before it read offsets by consumer).
    assert restarts == [], f"services crashed during the broker faults: {restarts}"
