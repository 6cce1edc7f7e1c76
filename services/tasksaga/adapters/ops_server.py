"""The operations endpoint of a service: ``/metrics``, ``/health/live``, ``/health/ready``.

A small HTTP server in a daemon thread, on its own port (``TASKSAGA_METRICS_PORT``), apart
from any public port: Prometheus and the kubelet reach it inside the cluster, no token is
asked, and nothing it serves names a tenant or a task. Readiness runs the service's own
checks, each bounded by a short timeout and reported as "ok" or "failing (<error type>)".
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = logging.getLogger(__name__)

Check = Callable[[], object]  # raises when the dependency is not usable
CHECK_TIMEOUT_S = 2.0


def outcome(probe: Check) -> str:
    try:
        result = probe()
    except Exception as error:
        # Type only: a probe's message can carry internal host names.
        return f"failing ({type(error).__name__})"
    return "ok" if result is not False else "failing (not running)"


def run_checks(checks: Mapping[str, Check]) -> tuple[bool, dict[str, str]]:
    results = {name: outcome(probe) for name, probe in checks.items()}
    return all(r == "ok" for r in results.values()), results


def postgres_check(pool: Any, timeout_s: float = CHECK_TIMEOUT_S) -> Check:
    def probe() -> None:
        with pool.connection(timeout=timeout_s) as conn:
            conn.execute("SELECT 1")

    return probe


def kafka_check(bootstrap: str, timeout_s: float = CHECK_TIMEOUT_S) -> Check:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap,
                         "socket.timeout.ms": int(timeout_s * 1000)})
    return lambda: admin.list_topics(timeout=timeout_s)


def threads_check(threads: Callable[[], list[threading.Thread]]) -> Check:
    """Ready while every thread (consumers, relay) is running."""
    def probe() -> bool:
        running = threads()
        return bool(running) and all(t.is_alive() for t in running)

    return probe


class _Handler(BaseHTTPRequestHandler):
    server: _OpsHTTPServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif path == "/health/live":
            self._json(200, {"status": "live"})
        elif path == "/health/ready":
            ready, results = run_checks(self.server.checks)
            self._json(200 if ready else 503,
                       {"status": "ready" if ready else "not ready", "checks": results})
        else:
            self._json(404, {"detail": f"no {path} here: /metrics, /health/live, "
                                       "/health/ready"})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._reply(status, json.dumps(body).encode(), "application/json")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib names it format
        log.debug("ops request: " + format, *args)


class _OpsHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], checks: Mapping[str, Check]) -> None:
        super().__init__(address, _Handler)
        self.checks = checks


def start_ops_server(port: int | None, checks: Mapping[str, Check],
                     host: str = "0.0.0.0") -> _OpsHTTPServer | None:
    """Serve the endpoints on ``port`` from a daemon thread (``None``: not at all)."""
    if port is None:
        return None
    try:
        server = _OpsHTTPServer((host, port), checks)
    except OSError as error:
        # Loud but not fatal: the service still does its work, and its probes (which fail)
        # show the misconfiguration; a port clash must not take the consumers down with it.
        log.error("cannot serve metrics and health on %s:%d: %s", host, port, error)
        return None
    threading.Thread(target=server.serve_forever, name="ops-server", daemon=True).start()
    log.info("metrics and health on port %d", server.server_address[1])
    return server
