"""HTTP POSTs that can only reach the addresses the URL guard vetted.

Why not ``httpx.post(url)``: httpx would resolve the host name again when it connects, and a
name that answered a public address to the guard may answer ``127.0.0.1`` a second later
(DNS rebinding). Here the request keeps the URL's host name — so the ``Host`` header, the
TLS SNI and the certificate's host name check are those of the name the submitter wrote —
but the connection is made by ``PinnedBackend``, an httpcore network backend that connects
only to the vetted addresses of the request in flight and resolves nothing itself. A
request with no vetted addresses (a bug) fails to connect: the backend fails closed.

httpcore (httpx's own transport layer) is used directly: it follows no redirects (a 3xx
is a status like any other), reads no proxy settings from the environment (a proxy would
make the guard moot), and takes a network backend. ``deadline_s`` bounds the whole POST —
connect, TLS, writing the body, waiting for the status line — not each phase, so a receiver
trickling one byte a second cannot hold a delivery slot past it.

Outcomes are split: ``PostResult.error`` is generic ("timed out", "connection failed",
"HTTP 502") and is what the submitter sees; ``PostResult.detail`` names the exception and
address, and goes to the logs only.
"""

from __future__ import annotations

import contextvars
import ssl
import time
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpcore

from tasksaga.adapters.url_guard import IPAddress, VettedUrl
from tasksaga.notifier.rules import succeeded

USER_AGENT = "tasksaga-notifier/1"
MAX_DETAIL_LENGTH = 500

# What the submitter may see about an attempt that got no HTTP status.
TIMED_OUT = "timed out"
CONNECTION_FAILED = "connection failed"
REFUSED_BY_POLICY = "refused by policy"


@dataclass(frozen=True)
class PostResult:
    status_code: int | None  # None: no HTTP response
    error: str | None  # generic, shown to the submitter; None when delivered (2xx)
    detail: str | None = None  # for the logs only: may name internal addresses


def status_result(status_code: int) -> PostResult:
    return PostResult(status_code, None if succeeded(status_code) else f"HTTP {status_code}")


@dataclass(frozen=True)
class _Pin:
    host: str
    port: int
    addresses: tuple[IPAddress, ...]
    deadline: float  # time.monotonic()


# The pin of the request this thread is sending. A context variable, not an attribute:
# several threads share one connection pool, each with its own request in flight.
_current: contextvars.ContextVar[_Pin | None] = contextvars.ContextVar(
    "tasksaga_vetted_pin", default=None)


def _remaining(timeout: float | None) -> float | None:
    pin = _current.get()
    if pin is None:
        return timeout
    left = pin.deadline - time.monotonic()
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A stream whose every read and write ends by the deadline of the request in flight."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        left = _remaining(timeout)
        if left is not None and left <= 0:
            raise httpcore.ReadTimeout("the delivery's deadline passed")
        return self._inner.read(max_bytes, left)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        left = _remaining(timeout)
        if left is not None and left <= 0:
            raise httpcore.WriteTimeout("the delivery's deadline passed")
        self._inner.write(buffer, left)

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, _remaining(timeout)))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class PinnedBackend(httpcore.NetworkBackend):
    """Connects only to the vetted addresses of the request in flight, in order."""

    def __init__(self, inner: httpcore.NetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        pin = _current.get()
        if pin is None or (host, port) != (pin.host, pin.port):
            raise httpcore.ConnectError(f"{host}:{port} was not vetted: refusing to connect")
        failure: Exception | None = None
        for address in pin.addresses:
            left = _remaining(timeout)
            if left is not None and left <= 0:
                raise httpcore.ConnectTimeout("the delivery's deadline passed")
            try:
                # An address literal: socket.create_connection resolves nothing.
                stream = self._inner.connect_tcp(str(address), port, left, local_address,
                                                 socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
                continue
            return _DeadlineStream(stream)
        raise failure or httpcore.ConnectError(f"{host} has no vetted address")

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
                            ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks never go to Unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class PinnedPoster:
    """POSTs a body to a ``VettedUrl``, connecting to its vetted addresses only.

    Thread-safe: one instance (and its connection pool) serves all concurrent deliveries.
    ``ssl_context`` defaults to the system's trust store with host name checking on; tests
    pass one trusting their own certificate authority.
    """

    def __init__(self, deadline_s: float, max_connections: int = 16,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        if deadline_s <= 0:
            raise ValueError(f"deadline_s must be > 0, got {deadline_s}")
        self._deadline_s = deadline_s
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context or ssl.create_default_context(),
            max_connections=max_connections, network_backend=PinnedBackend(),
        )

    def post(self, vetted: VettedUrl, body: bytes, headers: Mapping[str, str]) -> PostResult:
        pin = _Pin(vetted.host, vetted.port, vetted.addresses,
                   time.monotonic() + self._deadline_s)
        token = _current.set(pin)
        timeout = {phase: self._deadline_s for phase in ("connect", "read", "write", "pool")}
        url = httpcore.URL(scheme=vetted.scheme, host=vetted.host, port=vetted.port,
                           target=vetted.target)
        sent = [("Host", vetted.host_header), ("User-Agent", USER_AGENT),
                *((k, v) for k, v in headers.items() if k.lower() not in ("host", "user-agent"))]
        try:
            # The body of the answer is never read: only the status matters.
            with self._pool.stream("POST", url, headers=sent, content=body,
                                   extensions={"timeout": timeout}) as response:
                return status_result(response.status)
        except httpcore.TimeoutException as error:
            return PostResult(None, TIMED_OUT, _detail(vetted, error))
        except Exception as error:  # any failure to POST is a failed attempt, never a crash
            return PostResult(None, CONNECTION_FAILED, _detail(vetted, error))
        finally:
            _current.reset(token)

    def close(self) -> None:
        self._pool.close()


def _detail(vetted: VettedUrl, error: BaseException) -> str:
    addresses = ", ".join(map(str, vetted.addresses))
    return f"{type(error).__name__}: {error} ({vetted.host} at {addresses})"[:MAX_DETAIL_LENGTH]
