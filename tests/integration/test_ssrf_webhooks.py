"""S1 SSRF: hostile callback URLs through the real notifier (consumer, sender, Postgres).

A listener on the loopback (127.0.0.1 and ::1, one port) counts every connection it gets;
every hostile URL below aims at it, or at the metadata service, or at private ranges. The
one receiver the test allows (``127.0.0.2``, allowlisted as a stand-in for a public host:
Linux routes all of 127/8 to the loopback) plays the public-looking receiver that redirects
and the address a rebinding name first answers. Blocked means: not delivered, no connection
to the loopback listener, nothing reached but the vetted address, and the outcome the
submitter sees is generic.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from psycopg_pool import ConnectionPool

from tasksaga.adapters.url_guard import UrlGuard, system_resolver
from tasksaga.core import events as ev
from tasksaga.notifier import rules
from tasksaga.notifier.consumer import NotificationConsumer
from tasksaga.notifier.pinned_http import PinnedPoster
from tasksaga.notifier.sender import Sender
from tests.integration.http_receivers import QuietHandler, port_of, serving
from tests.integration.notifier_support import SECRET, event, now_ms, submitted

pytestmark = pytest.mark.integration

ALLOWED = "127.0.0.2"  # the only non-public address the guard lets through in this test


# -- the loopback listener that must stay silent ---------------------------------------------------


@dataclass
class LoopbackCounter:
    port: int
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    sockets: list[socket.socket] = field(default_factory=list)

    def count(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed at teardown
            with self.lock:
                self.connections += 1
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            conn.close()


@pytest.fixture
def loopback_counter() -> Iterator[LoopbackCounter]:
    v4 = socket.create_server(("127.0.0.1", 0))
    counter = LoopbackCounter(v4.getsockname()[1], sockets=[v4])
    # Without an IPv6 loopback the ::1 variants are still refused before connecting.
    with contextlib.suppress(OSError):
        counter.sockets.append(socket.create_server(("::1", counter.port),
                                                    family=socket.AF_INET6))
    for listener in counter.sockets:
        threading.Thread(target=counter.count, args=(listener,), daemon=True).start()
    yield counter
    for listener in counter.sockets:
        listener.close()


# -- the allowlisted receiver: records requests, redirects on /redirect/<where> ------------------


@dataclass
class AllowedReceiver:
    port: int
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)


@pytest.fixture
def allowed_receiver(loopback_counter: LoopbackCounter) -> Iterator[AllowedReceiver]:
    targets = {
        "metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "loopback": f"http://127.0.0.1:{loopback_counter.port}/",
    }
    receiver = AllowedReceiver(0)

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            self.read_body()
            receiver.requests.append((self.path, self.headers.get("Host", "")))
            where = self.path.removeprefix("/redirect/")
            if where in targets:
                self.answer(302, {"Location": targets[where]})
            else:
                self.answer(200)

    with serving(Handler, ALLOWED) as server:
        receiver.port = port_of(server)
        yield receiver


# -- a resolver under the test's control ---------------------------------------------------------


class Resolver:
    """Fixed answers for the test's names; a rebinding name answers each of its list in turn
    (the last one from then on); everything else goes to the system resolver."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self._answers = answers
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(host)
        if host not in self._answers:
            return system_resolver(host, port)
        sequence = self._answers[host]
        return sequence.pop(0) if len(sequence) > 1 else sequence[0]


def sender(pool: ConnectionPool, url: str, resolver: Resolver) -> Sender:
    return Sender(
        pool=pool, database_url=url, poster=PinnedPoster(5.0),
        guard=UrlGuard([f"{ALLOWED}/32"], resolver), secret=SECRET,
        schedule=rules.webhook_retry_policy(max_attempts=1, base_ms=0, cap_ms=0),
        now_ms=now_ms, random=lambda: 0.5, stop=threading.Event(),
    )


def deliver(pool: ConnectionPool, notifier: Sender, url: str) -> tuple[Any, ...]:
    """Subscribe a fresh task to ``url``, finish it, make one attempt; the attempt's row, or
    ("not queued", None, None) when the notifier did not even subscribe (not http(s))."""
    task_id = f"task-{uuid.uuid4()}"
    consumer = NotificationConsumer(pool, now_ms)
    consumer.handle(submitted(task_id, 1, url))
    consumer.handle(event(task_id, 2, ev.TaskCompleted('{"secret": "x"}', 1)))
    if not notifier.deliver_one():
        return ("not queued", None, None)
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT outcome, status_code, error FROM webhook_deliveries WHERE task_id = %s",
            (task_id,),
        ).fetchone()
    assert row is not None
    return tuple(row)


def hostile_urls(port: int) -> list[str]:
    aim = f":{port}/hook"
    return [f"{scheme}://{host}{aim}" for scheme in ("http", "https") for host in (
        "127.0.0.1", "127.0.0.2.", "127.1", "2130706433", "0177.0.0.1", "0x7f.1",
        "0x7f000001", "0x7f.0.0.1", "017700000001", "[::1]", "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]", "[::127.0.0.1]", "[::ffff:0:127.0.0.1]", "[64:ff9b::7f00:1]",
        "[2002:7f00:1::]", "0.0.0.0", "[::]", "localhost", "private-name.test",
        "loopback-name.test", "metadata-name.test", "169.254.169.254", "[fd00:ec2::254]",
        "10.0.0.1", "172.16.0.1", "192.168.0.1", "100.64.0.1", "169.254.0.1", "[fe80::1]",
        "[fc00::1]", "224.0.0.1", "[ff02::1]", "240.0.0.1",
    )] + [f"ftp://127.0.0.1{aim}", f"http://user@127.0.0.2{aim}"]


def test_s1_hostile_callback_urls_are_blocked_and_the_loopback_hears_nothing(
    schema_url: str, schema_pool: ConnectionPool,
    loopback_counter: LoopbackCounter, allowed_receiver: AllowedReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, receiver_port = loopback_counter.port, allowed_receiver.port
    resolver = Resolver({
        "private-name.test": [["10.1.2.3"]],
        "loopback-name.test": [["127.0.0.1"]],
        "metadata-name.test": [[ALLOWED, "169.254.169.254"]],  # one bad answer is enough
        "hooks.public-looking.test": [[ALLOWED]],
        # Rebinding: public (the allowlisted address) for the first question, then private.
        "rebind-at-send.test": [[ALLOWED], ["127.0.0.1"]],
        "rebind-at-connect.test": [[ALLOWED], ["127.0.0.1"]],
    })
    # A second resolution by the HTTP stack itself would see the rebound answer: record it.
    system_getaddrinfo = socket.getaddrinfo
    stack_lookups: list[str] = []

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".test"):
            stack_lookups.append(host)
            return system_getaddrinfo("127.0.0.1", *args, **kwargs)
        return system_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    notifier = sender(schema_pool, schema_url, resolver)
    outcomes: dict[str, tuple[Any, ...]] = {}

    # 1. Every refused form: refused at submit time (what the API calls) and at send time.
    submit_guard = UrlGuard([f"{ALLOWED}/32"], resolver)
    for url in hostile_urls(port):
        assert submit_guard.problem(url) is not None, f"accepted at submit time: {url}"
        outcomes[url] = deliver(schema_pool, notifier, url)

    # 2. A public-looking URL answering 302 to the metadata service, and to the loopback.
    for where in ("metadata", "loopback"):
        url = f"http://hooks.public-looking.test:{receiver_port}/redirect/{where}"
        assert submit_guard.problem(url) is None
        outcomes[url] = deliver(schema_pool, notifier, url)

    # 3. Rebinding between the submit-time and the send-time check: refused at send time.
    url = f"http://rebind-at-send.test:{receiver_port}/hook"
    assert submit_guard.problem(url) is None  # first answer: the allowed address
    outcomes[url] = deliver(schema_pool, notifier, url)  # second answer: 127.0.0.1

    blocked = {url for url, (outcome, _, error) in outcomes.items()
               if (outcome, error) == ("not queued", None)
               or (outcome == "gave_up" and error in ("refused by policy", "HTTP 302"))}
    print(f"S1 blocked/attempted = {len(blocked)}/{len(outcomes)},"
          f" loopback connections = {loopback_counter.connections},"
          f" redirects followed = 0 of {len(allowed_receiver.requests)} answered")
    assert set(outcomes) == blocked, {u: o for u, o in outcomes.items() if u not in blocked}
    assert loopback_counter.connections == 0
    # The redirector saw each redirect delivery exactly once; nothing else reached it.
    assert sorted(path for path, _ in allowed_receiver.requests) == [
        "/redirect/loopback", "/redirect/metadata"]
    # What the submitter sees names no address: the detail is in the log only.
    assert {o[2] for o in outcomes.values()} == {"refused by policy", "HTTP 302", None}

    # 4. Rebinding between the check and the connection: the POST goes to the vetted
    # address, and the rebound answer is never asked for, let alone used.
    url = f"http://rebind-at-connect.test:{receiver_port}/hook"
    assert deliver(schema_pool, notifier, url) == ("delivered", 200, None)
    assert allowed_receiver.requests[-1] == ("/hook", f"rebind-at-connect.test:{receiver_port}")
    assert resolver.calls.count("rebind-at-connect.test") == 1  # the send-time vetting only
    assert stack_lookups == []
    assert loopback_counter.connections == 0
    print(f"S1 rebinding: send-time answer 127.0.0.1 refused; vetted-then-rebound connected to"
          f" {ALLOWED} ({allowed_receiver.requests[-1][1]}), stack lookups = {len(stack_lookups)}")


def test_a_refused_receiver_is_not_retried(
    schema_url: str, schema_pool: ConnectionPool,
    loopback_counter: LoopbackCounter,
) -> None:
    notifier = Sender(
        pool=schema_pool, database_url=schema_url, poster=PinnedPoster(5.0),
        guard=UrlGuard([]), secret=SECRET,
        schedule=rules.webhook_retry_policy(max_attempts=8, base_ms=0, cap_ms=0),
        now_ms=now_ms, random=lambda: 0.5, stop=threading.Event(),
    )
    row = deliver(schema_pool, notifier, f"http://127.0.0.1:{loopback_counter.port}/")
    assert row == ("gave_up", None, "refused by policy")
    assert notifier.deliver_one() is False  # nothing left to retry
    assert loopback_counter.connections == 0

