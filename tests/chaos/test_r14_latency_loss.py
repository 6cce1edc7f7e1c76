"""R14: 100 ms latency and 5 % loss on the broker and Postgres ports, through toxiproxy.

The kernel here has no netem, so the faults are made by toxiproxy (built once with
``go install``, see tools/stacklib/toxiproxy.py) in front of both servers:

* Postgres: a throwaway cluster of the test's own (as R10's) behind a proxy; the services'
  ``TASKSAGA_DATABASE_URL`` points at the proxy (the test's own reads go direct). Its own,
  because the orchestrator claims timers by task type, not deployment: on the shared database
  it adopts every unfinished ChaosSaga task other runs left or are running.
* Kafka: clients reconnect to the broker's *advertised* listener after bootstrap, so a proxy in
  front of the shared broker would only see bootstrap traffic. The test starts a throwaway
  single KRaft broker (tools/stacklib's Kafka, its own directory and ports) that listens on one
  port and advertises the proxy's; every client connection then goes through the proxy.

The same system runs at three settings in turn (`make test` skips the second): none,
latency only (a ``latency`` toxic of 100 ms on each proxy's downstream: every
request/response round trip takes 100 ms more), and
latency + loss: also a ``reset_peer`` toxic of toxicity 0.05 on each downstream, added afresh
every 5 s, so every 5 s each connection has a 5 % chance that the next data the server sends
is dropped and the connection is reset 500 ms later (a TCP connection whose lost segment was
never recovered; docs/reliability.md says why this and not the other toxics). At each
setting a batch of ChaosSaga tasks is submitted and waited for; the figure is tasks completed
per second. Every accepted task must end Completed, no effect may be made twice, and the log
must be sound: the system degrades, it does not corrupt.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from stacklib.kafka_cluster import live_brokers
from stacklib.procs import port_open
from stacklib.toxiproxy import Toxiproxy

import stack_tool
from localrun import REPO
from tasksaga.adapters.migrations import apply_migrations
from tests.chaos.harness import Chaos, chaos_system, figure, percentile, pick, scale

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

# Below the ephemeral range, apart from R10's 21532 and the stack's own ports.
KAFKA_PORT, KAFKA_CONTROLLER_PORT, KAFKA_PROXY_PORT = 21692, 21693, 21694
PG_PROXY_PORT, TOXIPROXY_API_PORT, PG_PORT = 21695, 21696, 21697
LATENCY_MS = 100
LOSS = 0.05
LOSS_RESET_MS = 500
LOSS_ROLL_S = 5.0
PROXIES = ("kafka", "postgres")
SETTINGS = ("none", "latency", "latency+loss")


class ProxiedKafka(stack_tool.Kafka):
    """A single broker that advertises the proxy's port instead of its own, so every
    connection after bootstrap goes through toxiproxy."""

    heap = "512m"

    def __init__(self, settings: stack_tool.Settings, advertised_port: int) -> None:
        super().__init__(settings)
        self.advertised_port = advertised_port

    @property
    def lib(self) -> Path:
        return stack_tool.Settings.from_env().stack_dir / "kafka" / "lib"  # the stack's jars

    def server_properties(self) -> str:
        real = f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.s.kafka_port},"
        text = super().server_properties()
        assert real in text, "the stack's server.properties changed shape"
        return text.replace(real, f"advertised.listeners=PLAINTEXT://127.0.0.1:"
                                  f"{self.advertised_port},")

    def check_ready(self) -> bool:
        # Asked on the real port (no toxics yet): the node lists itself once unfenced.
        brokers = live_brokers(self.port) if port_open(self.port) else None
        return brokers is not None and 1 in brokers


@dataclass(frozen=True)
class ToxicStack:
    toxiproxy: Toxiproxy
    env: dict[str, str]  # the services' view: Kafka and Postgres through the proxies
    direct_database_url: str

    def apply(self, setting: str) -> None:
        """Latency toxics for "latency" and "latency+loss" (loss is rolled by ``losing``)."""
        for proxy in PROXIES:
            self.toxiproxy.remove_toxics(proxy)
            if setting in ("latency", "latency+loss"):
                self.toxiproxy.add_toxic(proxy, "latency", "latency", "downstream",
                                         latency=LATENCY_MS)

    def reconnections(self) -> int:
        return sum(self.toxiproxy.accepted_clients(proxy) for proxy in PROXIES)

    @contextlib.contextmanager
    def losing(self) -> Iterator[list[int]]:
        """While the body runs, re-add the loss toxic every LOSS_ROLL_S: toxiproxy rolls a
        toxic's toxicity once per connection direction when it is added, and the clients'
        connections are long-lived, so a toxic added once would hit a handful of connections
        or none. Yields the number of rolls made."""
        stop = threading.Event()
        rolls: list[int] = [0]

        def roll() -> None:
            while True:
                for proxy in PROXIES:
                    if rolls[0]:
                        self.toxiproxy.remove_toxic(proxy, "loss")
                    self.toxiproxy.add_toxic(proxy, "loss", "reset_peer", "downstream",
                                             toxicity=LOSS, timeout=LOSS_RESET_MS)
                rolls[0] += 1
                if stop.wait(LOSS_ROLL_S):
                    return

        thread = threading.Thread(target=roll, name="r14-loss", daemon=True)
        thread.start()
        try:
            yield rolls
        finally:
            stop.set()
            thread.join(timeout=30)
            for proxy in PROXIES:
                self.toxiproxy.remove_toxics(proxy)


@pytest.fixture
def toxic_stack(stack_env: dict[str, str]) -> Iterator[ToxicStack]:
    # Under the repository (as R10's): one folder for the broker, the proxy and their logs.
    home = REPO / ".run" / f"chaos-r14-{uuid.uuid4().hex[:8]}"
    settings = stack_tool.Settings.from_env({
        "TASKSAGA_STACK_DIR": str(home), "TASKSAGA_KAFKA_PORT": str(KAFKA_PORT),
        "TASKSAGA_KAFKA_CONTROLLER_PORT": str(KAFKA_CONTROLLER_PORT),
        "TASKSAGA_PG_PORT": str(PG_PORT)})
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    shared = stack_tool.Settings.from_env()
    # Built into the stack's bin/ on first use; a failed build fails the test with go's output.
    toxiproxy = Toxiproxy(settings, TOXIPROXY_API_PORT, bin_dir=shared.bin_dir)
    kafka = ProxiedKafka(settings, advertised_port=KAFKA_PROXY_PORT)
    postgres = stack_tool.Postgres(settings)
    try:
        postgres.start()
        postgres.wait_ready(60)
        toxiproxy.start()
        toxiproxy.wait_ready(30)
        toxiproxy.create_proxy("kafka", KAFKA_PROXY_PORT, KAFKA_PORT)
        toxiproxy.create_proxy("postgres", PG_PROXY_PORT, PG_PORT)
        if not kafka.installed():
            kafka.install()
        kafka.ensure_ports_free()
        kafka.start()
        kafka.wait_ready(180)
        credentials = f"{settings.pg_user}:{settings.pg_password}"
        direct = f"postgresql://{credentials}@127.0.0.1:{PG_PORT}/{settings.pg_db}"
        proxied = f"postgresql://{credentials}@127.0.0.1:{PG_PROXY_PORT}/{settings.pg_db}"
        apply_migrations(direct)
        yield ToxicStack(toxiproxy, {
            **stack_env, "TASKSAGA_KAFKA_BOOTSTRAP": f"127.0.0.1:{KAFKA_PROXY_PORT}",
            "TASKSAGA_DATABASE_URL": proxied}, direct)
    finally:
        for server in (kafka, postgres, toxiproxy):
            pid = server.pid()
            if pid is not None:
                server.stop(pid)
        shutil.rmtree(home, ignore_errors=True)


def _batch(chaos: Chaos, count: int, timeout_s: float) -> tuple[dict[str, str], float]:
    """Submit ``count`` tasks at once and wait for them; (statuses, seconds taken)."""
    started = time.monotonic()
    ids = chaos.submit_many(count, threads=4)
    statuses = chaos.settle(ids, timeout_s=timeout_s, check_alive=False)
    return statuses, time.monotonic() - started


def _task_seconds_p50(chaos: Chaos, task_ids: list[str]) -> float:
    """Median time from a task's first event to its last (submission to completion)."""
    with psycopg.connect(chaos.database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT extract(epoch FROM max(recorded_at) - min(recorded_at))"
                            " FROM events WHERE stream_id = ANY(%s) GROUP BY stream_id",
                            (task_ids,)).fetchall()
    return percentile([float(r[0]) for r in rows], 0.5)


def test_latency_and_loss_degrade_throughput_without_duplicate_effects(
    toxic_stack: ToxicStack,
) -> None:
    count = pick(reduced=8, full=60)
    # make test runs the no-fault and the latency + loss settings (the loss setting has the
    # latency too); make chaos adds latency alone.
    settings = SETTINGS if scale() == "full" else ("none", "latency+loss")
    throughput: dict[str, float] = {}
    with chaos_system(toxic_stack.env) as chaos, chaos.supervised() as restarts:
        chaos.database_url = toxic_stack.direct_database_url  # the test's reads go direct
        first = chaos.submit()
        assert first is not None, f"the first submission was refused: {chaos.refused}"
        warm = chaos.settle([first], timeout_s=90)[first]
        assert warm == "Completed", f"a first task without faults is {warm} after 90 s"
        reconnections: dict[str, int] = {}
        task_p50: dict[str, float] = {}
        rolls = 0
        for setting in settings:
            toxic_stack.apply(setting)
            before = toxic_stack.reconnections()
            submitted = len(chaos.accepted)
            with (toxic_stack.losing() if setting == "latency+loss"
                  else contextlib.nullcontext([0])) as rolled:
                batch, seconds = _batch(chaos, count, timeout_s=pick(reduced=90, full=300))
            rolls += rolled[0]
            reconnections[setting] = toxic_stack.reconnections() - before
            done = sum(1 for s in batch.values() if s == "Completed")
            task_p50[setting] = _task_seconds_p50(chaos, chaos.accepted[submitted:])
            throughput[setting] = done / seconds
        toxic_stack.apply("none")
        accepted = list(chaos.accepted)
        statuses = chaos.settle(accepted, timeout_s=60, check_alive=False)
        ledger = chaos.ledger(accepted)
        log = chaos.log_problems(accepted)

    doubled = ledger.doubled_effects()
    figure("R14", tasks_per_setting=count, accepted=len(accepted),
           refused=len(chaos.refused),
           **{f"tasks_per_s_{s.replace('+', '_')}": throughput[s] for s in settings},
           **{f"reconnections_{s.replace('+', '_')}": reconnections[s] for s in settings},
           **{f"task_p50_s_{s.replace('+', '_')}": task_p50[s] for s in settings},
           loss_rolls=rolls,
           not_completed=sum(1 for s in statuses.values() if s != "Completed"),
           reexecutions=ledger.reexecutions(), doubled_effects=len(doubled),
           service_restarts=len(restarts), log_problems=len(log))
    assert set(statuses.values()) == {"Completed"}, {
        t: s for t, s in statuses.items() if s != "Completed"}
    assert doubled == []
    assert log == []
