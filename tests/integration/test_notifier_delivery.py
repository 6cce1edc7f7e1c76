"""The notifier against the real Postgres and Kafka, POSTing to a local HTTP receiver.

Each test works in its own Postgres schema (search_path) and its own topic prefix: another
notifier sharing the stack — say an end-to-end run with a different secret — can neither
claim these deliveries nor see these events. Waits are bounded polls; nothing is timed.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import psycopg
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from psycopg_pool import ConnectionPool

from localrun import local_payload_cipher, local_payload_keys
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import KafkaProducer
from tasksaga.adapters.lifecycle import ServiceStop
from tasksaga.adapters.migrations import apply_migrations
from tasksaga.adapters.pg_store import open_pool
from tasksaga.adapters.topics import ensure_topics
from tasksaga.adapters.url_guard import UrlGuard
from tasksaga.adapters.wire import Envelope, Topics, WebhookDelivery
from tasksaga.core import events as ev
from tasksaga.notifier import main as notifier_main
from tasksaga.notifier import rules
from tasksaga.notifier.consumer import NotificationConsumer
from tasksaga.notifier.pinned_http import PinnedPoster
from tasksaga.notifier.sender import Sender
from tasksaga.notifier.settings import NotifierSettings
from tasksaga.notifier.signature import verify

pytestmark = pytest.mark.integration

SECRET = "integration-secret-0123456789"
DEADLINE_S = 60.0


# -- a local webhook receiver ---------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    """Answers 500 to the first ``failures`` POSTs of each delivery, then 200."""

    failures: int
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            delivery = headers.get("X-Tasksaga-Delivery")
            earlier = sum(1 for r in self.requests if r.headers.get("X-Tasksaga-Delivery")
                          == delivery)
            status = 500 if earlier < self.failures else 200
            self.requests.append(Received(headers, body, status))
            return status

    def of(self, delivery_id: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests
                    if r.headers.get("X-Tasksaga-Delivery") == delivery_id]


@pytest.fixture
def receiver_factory() -> Iterator[Callable[[int], tuple[Receiver, str]]]:
    servers: list[ThreadingHTTPServer] = []

    def start(failures: int) -> tuple[Receiver, str]:
        receiver = Receiver(failures)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver.answer(dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep the test output quiet

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return receiver, f"http://127.0.0.1:{server.server_address[1]}/hooks/tasks"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# -- a private schema and topics ------------------------------------------------------------------


@pytest.fixture
def schema_url(database_url: str) -> Iterator[str]:
    """The stack's database, but every table in a fresh schema of this test's own."""
    schema = f"notifier_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in database_url else "?"
    url = f"{database_url}{separator}options={quote(f'-csearch_path={schema}')}"
    try:
        apply_migrations(url)
        yield url
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def schema_pool(schema_url: str) -> Iterator[ConnectionPool]:
    pool = open_pool(schema_url, max_size=4, name="notifier-tests")
    yield pool
    pool.close()


@pytest.fixture
def topics(kafka_bootstrap: str, topic_prefix: str) -> Iterator[Topics]:
    topics = Topics(topic_prefix)
    names = [topics.task_events, topics.webhook_deliveries, topics.dead_letter]
    ensure_topics(kafka_bootstrap, names, partitions=2)
    yield topics
    for future in AdminClient({"bootstrap.servers": kafka_bootstrap}).delete_topics(
        names, operation_timeout=30
    ).values():
        with contextlib.suppress(Exception):  # cleanup only; a leftover topic harms no one
            future.result(timeout=30)


# -- helpers --------------------------------------------------------------------------------------


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def event(task_id: str, version: int, payload: object, task_type: str = "zip_archive") -> Envelope:
    return Envelope(
        payload=payload, message_id=f"{task_id}:{version}", task_id=task_id,
        correlation_id=task_id, causation_id=None, occurred_at_ms=1_714_564_800_000 + version,
        task_type=task_type, version=version,
    )


def submitted(task_id: str, version: int, url: str | None) -> Envelope:
    return event(task_id, version, ev.TaskSubmitted(
        task_id, "zip_archive", "{}", url, None, 1_714_564_800_000, None,
    ))


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {DEADLINE_S:.0f} s for {what}")
        time.sleep(0.05)


def attempts(pool: ConnectionPool, delivery_id: str) -> list[tuple[int, str, int | None]]:
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT attempt, outcome, status_code FROM webhook_deliveries"
            " WHERE delivery_id = %s ORDER BY attempt", (delivery_id,),
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def pending(pool: ConnectionPool, task_id: str) -> list[str]:
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT delivery_id FROM pending_webhooks WHERE task_id = %s ORDER BY delivery_id",
            (task_id,),
        ).fetchall()
    return [r[0] for r in rows]


def assert_signed(request: Received, delivery_id: str) -> dict[str, object]:
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Tasksaga-Delivery"] == delivery_id
    assert verify(SECRET, request.headers["X-Tasksaga-Timestamp"], request.body,
                  request.headers["X-Tasksaga-Signature"])
    body = json.loads(request.body)
    assert isinstance(body, dict)
    return body


# These receivers listen on 127.0.0.1: let them through the SSRF guard (tested on its own in
# test_ssrf_webhooks.py).
LOCAL_RECEIVERS = ["127.0.0.1/32"]


def direct_sender(pool: ConnectionPool, url: str, max_attempts: int) -> Sender:
    # base 0: every retry is due at once, so the test drives attempts with deliver_one().
    return Sender(
        pool=pool, database_url=url, poster=PinnedPoster(10.0), guard=UrlGuard(LOCAL_RECEIVERS),
        secret=SECRET,
        schedule=rules.webhook_retry_policy(max_attempts=max_attempts, base_ms=0, cap_ms=0),
        now_ms=now_ms, random=lambda: 0.5, stop=threading.Event(),
    )


# -- the consumer and sender, driven step by step -------------------------------------------------


def test_retries_until_delivered_and_a_redelivered_event_is_not_sent_again(
    schema_url: str, schema_pool: ConnectionPool,
    receiver_factory: Callable[[int], tuple[Receiver, str]],
) -> None:
    receiver, url = receiver_factory(2)
    consumer = NotificationConsumer(schema_pool, now_ms)
    sender = direct_sender(schema_pool, schema_url, max_attempts=8)
    task_id = f"task-{uuid.uuid4()}"
    finished = event(task_id, 3, ev.TaskCompleted('{"archive": "s3://b/a.zip"}', 1))

    consumer.handle(submitted(task_id, 1, url))
    consumer.handle(event(task_id, 2, ev.StepDispatched("zip", 1, "default", 1, 2)))
    consumer.handle(finished)
    consumer.handle(finished)  # redelivered while still queued
    assert pending(schema_pool, task_id) == [f"{task_id}:3"]

    assert [sender.deliver_one() for _ in range(4)] == [True, True, True, False]

    delivery_id = f"{task_id}:3"
    assert attempts(schema_pool, delivery_id) == [
        (1, "retrying", 500), (2, "retrying", 500), (3, "delivered", 200),
    ]
    assert pending(schema_pool, task_id) == []
    posts = receiver.of(delivery_id)
    assert [p.answered for p in posts] == [500, 500, 200]
    bodies = [assert_signed(p, delivery_id) for p in posts]
    assert all(p.body == posts[0].body for p in posts)  # the same bytes on every attempt
    assert bodies[0] == {
        "delivery_id": delivery_id, "task_id": task_id, "task_type": "zip_archive",
        "event_type": "TaskCompleted", "version": 3,
        "occurred_at": "2024-05-01T12:00:00.003Z", "status": "Completed", "step": None,
        "response": {"archive": "s3://b/a.zip"}, "reason": None, "error": None,
    }

    # Redelivered after it was delivered (the pending row is gone): still nothing new.
    consumer.handle(finished)
    assert pending(schema_pool, task_id) == []
    assert sender.deliver_one() is False
    assert len(receiver.of(delivery_id)) == 3


def test_gives_up_after_max_attempts_and_ignores_unsubscribed_tasks(
    schema_url: str, schema_pool: ConnectionPool,
    receiver_factory: Callable[[int], tuple[Receiver, str]],
) -> None:
    receiver, url = receiver_factory(1_000)
    consumer = NotificationConsumer(schema_pool, now_ms)
    sender = direct_sender(schema_pool, schema_url, max_attempts=3)
    task_id, silent_id = f"task-{uuid.uuid4()}", f"task-{uuid.uuid4()}"

    consumer.handle(submitted(silent_id, 1, None))
    consumer.handle(event(silent_id, 2, ev.TaskFailed("boom", 1)))
    consumer.handle(submitted(task_id, 1, url))
    consumer.handle(event(task_id, 2, ev.TaskFailed("step fetch failed", 1)))
    assert pending(schema_pool, silent_id) == []

    while sender.deliver_one():
        pass

    delivery_id = f"{task_id}:2"
    assert attempts(schema_pool, delivery_id) == [
        (1, "retrying", 500), (2, "retrying", 500), (3, "gave_up", 500),
    ]
    assert pending(schema_pool, task_id) == []
    body = assert_signed(receiver.of(delivery_id)[0], delivery_id)
    assert (body["event_type"], body["status"], body["reason"]) == (
        "TaskFailed", "Failed", "step fetch failed",
    )
    with schema_pool.connection() as conn:
        row = conn.execute("SELECT error FROM webhook_deliveries WHERE delivery_id = %s"
                           " AND attempt = 3", (delivery_id,)).fetchone()
    assert row == ("HTTP 500",)


def test_a_refused_connection_is_a_failed_attempt(
    schema_url: str, schema_pool: ConnectionPool
) -> None:
    # A port nothing listens on: bind one, note it, close it.
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as server:
        port = server.server_address[1]
    consumer = NotificationConsumer(schema_pool, now_ms)
    sender = direct_sender(schema_pool, schema_url, max_attempts=1)
    task_id = f"task-{uuid.uuid4()}"
    consumer.handle(submitted(task_id, 1, f"http://127.0.0.1:{port}/"))
    consumer.handle(event(task_id, 2, ev.TaskCancelled("asked", 1)))

    assert sender.deliver_one()

    with schema_pool.connection() as conn:
        row = conn.execute("SELECT outcome, status_code, error FROM webhook_deliveries"
                           " WHERE delivery_id = %s", (f"{task_id}:2",)).fetchone()
    # What the submitter sees is generic: the detail (the exception) goes to the log only.
    assert row == ("gave_up", None, "connection failed")


# -- no transaction across the POST (issue 8, defect 1) ------------------------------------------


def test_no_transaction_is_open_while_a_webhook_post_is_in_flight(
    database_url: str, schema_url: str
) -> None:
    """A receiver holds the POST; meanwhile no session of the notifier's pool may be inside
    a transaction (one idling there holds back the horizon every projection reads below)."""
    application = f"tasksaga-notifier-{uuid.uuid4().hex[:8]}"
    pool = open_pool(schema_url, max_size=2, name=application)
    arrived, release = threading.Event(), threading.Event()

    class Blocking(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            arrived.set()
            release.wait(DEADLINE_S)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Blocking)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    task_id = f"task-{uuid.uuid4()}"
    consumer = NotificationConsumer(pool, now_ms)
    consumer.handle(submitted(task_id, 1, f"http://127.0.0.1:{server.server_address[1]}/h"))
    consumer.handle(event(task_id, 2, ev.TaskCompleted("{}", 1)))
    sender = direct_sender(pool, schema_url, max_attempts=1)
    worker = threading.Thread(target=sender.deliver_one)
    worker.start()
    try:
        assert arrived.wait(DEADLINE_S), "the receiver never got the POST"
        with psycopg.connect(database_url, autocommit=True) as conn:
            in_transaction = conn.execute(
                "SELECT pid, state, now() - xact_start FROM pg_stat_activity"
                " WHERE application_name = %s AND xact_start IS NOT NULL", (application,),
            ).fetchall()
    finally:
        release.set()
        worker.join(DEADLINE_S)
        server.shutdown()
        server.server_close()
    print(f"notifier sessions inside a transaction during the POST = {len(in_transaction)}"
          f" {in_transaction}")
    assert in_transaction == []
    assert attempts(pool, f"{task_id}:2") == [(1, "delivered", 200)]
    pool.close()


def test_a_sender_that_dies_mid_post_loses_nothing(
    schema_url: str, schema_pool: ConnectionPool,
    receiver_factory: Callable[[int], tuple[Receiver, str]],
) -> None:
    """The lease replaces the row lock: a sender that claimed and died (no record) leaves the
    delivery due again when the lease expires, and a late record by it changes nothing."""
    receiver, url = receiver_factory(0)
    clock = [now_ms()]

    def leased_sender() -> Sender:
        return Sender(
            pool=schema_pool, database_url=schema_url, poster=PinnedPoster(10.0),
            guard=UrlGuard(LOCAL_RECEIVERS), secret=SECRET,
            schedule=rules.webhook_retry_policy(max_attempts=8, base_ms=0, cap_ms=0),
            now_ms=lambda: clock[0], random=lambda: 0.5, stop=threading.Event(),
            lease_ms=30_000,
        )

    task_id = f"task-{uuid.uuid4()}"
    consumer = NotificationConsumer(schema_pool, now_ms)
    consumer.handle(submitted(task_id, 1, url))
    consumer.handle(event(task_id, 2, ev.TaskFailed("boom", 1)))
    clock[0] = now_ms()
    crashed, survivor = leased_sender(), leased_sender()
    lease = crashed.claim()
    assert lease is not None and lease.attempt == 1
    # ... and the crashed sender never records. The delivery is leased, not lost:
    assert survivor.deliver_one() is False
    assert pending(schema_pool, task_id) == [f"{task_id}:2"]
    clock[0] += 30_001  # the lease expires
    assert survivor.deliver_one() is True
    assert attempts(schema_pool, f"{task_id}:2") == [(2, "delivered", 200)]
    assert pending(schema_pool, task_id) == []
    # A zombie that comes back and records its stale lease cannot resurrect the delivery.
    crashed.attempt(lease)
    assert pending(schema_pool, task_id) == []
    assert survivor.deliver_one() is False
    assert len(receiver.of(f"{task_id}:2")) == 2  # at least once; receivers de-duplicate


# -- the whole service: Kafka in, LISTEN/NOTIFY-woken sender threads, records out -----------------


def read_delivery_records(
    bootstrap: str, topic: str, task_id: str, codec: AvroCodec, count: int
) -> list[WebhookDelivery]:
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"{topic}-reader-{uuid.uuid4().hex[:6]}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    found: list[WebhookDelivery] = []
    try:
        deadline = time.monotonic() + DEADLINE_S
        while len(found) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            envelope = codec.decode(message.value())
            if envelope.task_id == task_id and isinstance(envelope.payload, WebhookDelivery):
                found.append(envelope.payload)
    finally:
        consumer.close()
    return found


def test_the_service_delivers_events_from_kafka(
    schema_url: str, schema_pool: ConnectionPool, kafka_bootstrap: str, topics: Topics,
    receiver_factory: Callable[[int], tuple[Receiver, str]],
) -> None:
    receiver, url = receiver_factory(2)
    codec = AvroCodec(cipher=local_payload_cipher())
    settings = NotifierSettings(
        kafka_bootstrap=kafka_bootstrap, database_url=schema_url,
        payload_keys=local_payload_keys(),
        topic_prefix=topics.prefix, topic_partitions=2, webhook_secret=SECRET,
        webhook_max_attempts=5, webhook_timeout_s=10.0,
        webhook_backoff_base_s=0.02, webhook_backoff_cap_s=0.1, webhook_senders=2,
        url_allowlist=LOCAL_RECEIVERS,
    )
    stop = ServiceStop()
    failures: list[BaseException] = []

    def run_service() -> None:
        try:
            notifier_main.run(settings, stop)
        except BaseException as error:
            failures.append(error)

    service = threading.Thread(target=run_service, name="notifier-under-test")
    service.start()
    task_id = f"task-{uuid.uuid4()}"
    progress, done = f"{task_id}:3", f"{task_id}:4"
    try:
        producer = KafkaProducer(kafka_bootstrap, "notifier-test")
        step_completed = event(task_id, 3, ev.StepCompleted("zip", 1, "{}", 1))
        for envelope in (
            submitted(task_id, 1, url),
            event(task_id, 2, ev.StepDispatched("zip", 1, "default", 1, 2)),
            step_completed,
            step_completed,  # the same record twice, as after a consumer restart
            event(task_id, 4, ev.TaskCompleted('{"ok": true}', 1)),
        ):
            producer.send_envelope(codec, topics.task_events, envelope)

        wait_for(lambda: not failures and all(
            any(r.answered == 200 for r in receiver.of(d)) for d in (progress, done)
        ), "both deliveries to succeed")
        wait_for(lambda: len(attempts(schema_pool, done)) == 3
                 and len(attempts(schema_pool, progress)) == 3, "the attempt log")
    finally:
        stop.set()
        service.join(DEADLINE_S)
    assert not service.is_alive()
    assert failures == []

    for delivery_id in (progress, done):
        assert attempts(schema_pool, delivery_id) == [
            (1, "retrying", 500), (2, "retrying", 500), (3, "delivered", 200),
        ]
        assert [r.answered for r in receiver.of(delivery_id)] == [500, 500, 200]
    assert pending(schema_pool, task_id) == []

    progress_body = assert_signed(receiver.of(progress)[-1], progress)
    assert (progress_body["event_type"], progress_body["status"], progress_body["step"]) == (
        "StepCompleted", "Running", "zip",
    )
    done_body = assert_signed(receiver.of(done)[-1], done)
    assert (done_body["event_type"], done_body["status"], done_body["version"]) == (
        "TaskCompleted", "Completed", 4,
    )
    assert done_body["response"] == {"ok": True}

    records = read_delivery_records(
        kafka_bootstrap, topics.webhook_deliveries, task_id, codec, count=6
    )
    assert sorted((r.delivery_id, r.attempt, r.outcome, r.status_code) for r in records) == [
        (progress, 1, "retrying", 500), (progress, 2, "retrying", 500),
        (progress, 3, "delivered", 200),
        (done, 1, "retrying", 500), (done, 2, "retrying", 500), (done, 3, "delivered", 200),
    ]
