"""S5 (webhooks): a 30 s receiver does not delay other receivers' or tenants' webhooks.

Tenant "slow" has three receiver hosts that each take 30 s to answer; tenant "fast" has one
that answers at once. The slow tenant's deliveries are queued first, so a sender working in
queue order with a few threads (the old notifier: two threads, each holding its delivery for
the whole POST) would leave every fast delivery waiting 30 s. The bounds — 2 per receiver
host, 4 per tenant, 8 in all — keep the slow tenant in its own slots.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest
from psycopg_pool import ConnectionPool

from tasksaga.adapters.url_guard import UrlGuard
from tasksaga.core import events as ev
from tasksaga.notifier import rules
from tasksaga.notifier.consumer import NotificationConsumer
from tasksaga.notifier.pinned_http import PinnedPoster
from tasksaga.notifier.sender import Limits, Sender
from tests.integration.http_receivers import QuietHandler, port_of, serving
from tests.integration.notifier_support import DEADLINE_S, SECRET, event, now_ms

pytestmark = pytest.mark.integration

SLOW_S = 30.0
HOST = "127.0.0.2"
SLOW_HOSTS = ["slow-1.tenant-slow.test", "slow-2.tenant-slow.test", "slow-3.tenant-slow.test"]
FAST_HOST = "hooks.tenant-fast.test"
LIMITS = Limits(total=8, per_receiver=2, per_tenant=4)


@dataclass
class Receiver:
    """Answers 200 at once on /fast; holds /slow requests for 30 s (or until released)."""

    port: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrivals: dict[str, float] = field(default_factory=dict)  # delivery id -> monotonic
    slow_in_flight: dict[str, int] = field(default_factory=dict)  # by Host header
    slow_peak: int = 0
    slow_peak_by_host: dict[str, int] = field(default_factory=dict)

    def slow(self, host: str) -> None:
        with self.lock:
            self.slow_in_flight[host] = self.slow_in_flight.get(host, 0) + 1
            self.slow_peak = max(self.slow_peak, sum(self.slow_in_flight.values()))
            self.slow_peak_by_host[host] = max(self.slow_peak_by_host.get(host, 0),
                                               self.slow_in_flight[host])
        self.release.wait(SLOW_S)
        with self.lock:
            self.slow_in_flight[host] -= 1


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            self.read_body()
            if self.path == "/slow":
                state.slow(self.headers.get("Host", ""))
            else:
                with state.lock:
                    state.arrivals[self.headers.get("X-Tasksaga-Delivery", "")] = (
                        time.monotonic())
            self.answer(200)

    with serving(Handler, HOST) as server:
        state.port = port_of(server)
        yield state
        state.release.set()  # before the server stops: its handlers may still hold requests


def resolver(host: str, port: int) -> Sequence[str]:
    if host in (*SLOW_HOSTS, FAST_HOST):
        return [HOST]
    raise OSError(f"unknown test host {host}")


def queue(consumer: NotificationConsumer, tenant: str, url: str) -> str:
    task_id = f"task-{uuid.uuid4()}"
    consumer.handle(event(task_id, 1, ev.TaskSubmitted(
        task_id, "zip_archive", "{}", url, None, 1_714_564_800_000, None, tenant=tenant)))
    consumer.handle(event(task_id, 2, ev.TaskCompleted("{}", 1)))
    return f"{task_id}:2"


def test_s5_a_slow_receiver_only_occupies_its_own_slots(
    schema_url: str, schema_pool: ConnectionPool,
    receiver: Receiver,
) -> None:
    consumer = NotificationConsumer(schema_pool, now_ms)
    for index in range(12):
        queue(consumer, "slow", f"http://{SLOW_HOSTS[index % 3]}:{receiver.port}/slow")
    queued_at: dict[str, float] = {}
    for _ in range(10):
        delivery_id = queue(consumer, "fast", f"http://{FAST_HOST}:{receiver.port}/fast")
        queued_at[delivery_id] = time.monotonic()

    stop = threading.Event()
    sender = Sender(
        pool=schema_pool, database_url=schema_url, poster=PinnedPoster(SLOW_S + 10.0),
        guard=UrlGuard([f"{HOST}/32"], resolver), secret=SECRET,
        schedule=rules.webhook_retry_policy(max_attempts=3, base_ms=0, cap_ms=0),
        now_ms=now_ms, random=lambda: 0.5, stop=stop, limits=LIMITS, lease_ms=60_000,
    )
    started = time.monotonic()
    dispatcher = threading.Thread(target=sender.run, name="s5-sender")
    dispatcher.start()
    try:
        deadline = started + DEADLINE_S
        while len(receiver.arrivals) < len(queued_at) and time.monotonic() < deadline:
            time.sleep(0.02)
        all_fast_s = time.monotonic() - started
        with receiver.lock:
            slow_still_held = sum(receiver.slow_in_flight.values())
    finally:
        receiver.release.set()
        stop.set()
        dispatcher.join(DEADLINE_S)
    assert not dispatcher.is_alive()

    latencies = sorted(receiver.arrivals[d] - queued_at[d] for d in queued_at
                       if d in receiver.arrivals)
    print(f"S5 webhooks: fast tenant {len(latencies)}/{len(queued_at)} delivered while the"
          f" slow tenant's receivers ({SLOW_S:.0f} s) held {slow_still_held} requests;"
          f" fast latency p50 = {latencies[len(latencies) // 2]:.3f} s,"
          f" max = {latencies[-1]:.3f} s; all fast deliveries in {all_fast_s:.2f} s;"
          f" slow in flight peak = {receiver.slow_peak} (tenant bound {LIMITS.per_tenant}),"
          f" per host peak = {max(receiver.slow_peak_by_host.values())}"
          f" (host bound {LIMITS.per_receiver})")
    assert len(latencies) == len(queued_at)
    # Every fast delivery arrived while the slow receivers still held their requests: none
    # of them waited for a slow one to finish (which takes SLOW_S).
    assert slow_still_held == LIMITS.per_tenant
    assert latencies[-1] < SLOW_S / 3
    assert receiver.slow_peak == LIMITS.per_tenant
    assert max(receiver.slow_peak_by_host.values()) == LIMITS.per_receiver
