"""The ops endpoint: liveness, readiness from the service's own checks, Prometheus text."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from prometheus_client import Counter

from tasksaga.adapters.ops_server import Check, kafka_check, run_checks, start_ops_server


@contextmanager
def serving(checks: dict[str, Check]) -> Iterator[str]:
    server = start_ops_server(0, checks, host="127.0.0.1")
    assert server is not None
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_ready_only_while_every_check_passes_and_failures_name_only_the_error_type() -> None:
    state = {"consumer": True}

    def broken() -> None:
        raise ConnectionError("db.internal.example:5432 refused")

    with serving({"consumer": lambda: state["consumer"]}) as base:
        assert get(f"{base}/health/ready")[0] == 200
        state["consumer"] = False
        status, body = get(f"{base}/health/ready")
        assert status == 503
        assert json.loads(body)["checks"] == {"consumer": "failing (not running)"}
        assert get(f"{base}/health/live")[0] == 200  # live even when not ready
    ready, results = run_checks({"postgres": broken})
    assert not ready and results == {"postgres": "failing (ConnectionError)"}


def test_kafka_check_fails_within_its_timeout_when_no_broker_answers() -> None:
    ready, results = run_checks({"kafka": kafka_check("127.0.0.1:1", timeout_s=0.5)})
    assert not ready and results["kafka"].startswith("failing (")


def test_metrics_serve_the_prometheus_registry_and_unknown_paths_are_404() -> None:
    Counter("tasksaga_ops_test_hits", "a counter of this test").inc()
    with serving({}) as base:
        status, body = get(f"{base}/metrics")
        assert status == 200 and "tasksaga_ops_test_hits_total 1.0" in body
        assert get(f"{base}/tasks")[0] == 404


def test_no_port_serves_nothing_and_a_taken_port_is_logged_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert start_ops_server(None, {}) is None
    with serving({}) as base:
        taken = int(base.rsplit(":", 1)[1])
        assert start_ops_server(taken, {}, host="127.0.0.1") is None
    assert "cannot serve metrics and health" in caplog.text
