"""A Kafka outage must not take the API down (issue 8, defect 10): submits fail fast with 503
and Retry-After, their uploads are removed, and reads, liveness and readiness keep answering.

The API runs in-process on the real Postgres and MinIO, with a producer pointed at a port where
no broker listens: exactly what a client of an API sees when the brokers are gone.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from unittest import mock

import pytest

from tests.integration.inprocess_api import bearer, inprocess_api, release_inprocess_apps

pytestmark = pytest.mark.integration

DEAD_BROKER = "127.0.0.1:1"


def test_submits_fail_fast_with_503_and_reads_keep_answering(stack_env: dict[str, str]) -> None:
    with inprocess_api(stack_env, DEAD_BROKER, delivery_timeout_ms=1500) as (client, deps), \
            mock.patch.object(deps.producer, "send_envelope",
                              wraps=deps.producer.send_envelope) as sends:
        tenant = f"outage{uuid.uuid4().hex[:6]}"
        auth = bearer(tenant)
        content = f"hello from {tenant}".encode()  # no other task holds it

        started = time.monotonic()
        first = client.post("/tasks/CreateZip", headers=auth, data={"archive_name": "a.zip"},
                            files=[("files", ("a.txt", content, "text/plain"))])
        first_s = time.monotonic() - started
        assert first.status_code == 503, first.text
        assert int(first.headers["retry-after"]) >= 1
        assert "nothing was accepted" in first.json()["detail"]

        timings = []
        for _ in range(5):
            started = time.monotonic()
            again = client.post("/tasks/CreateZip", headers=auth,
                                data={"archive_name": "a.zip"},
                                files=[("files", ("a.txt", content, "text/plain"))])
            timings.append(time.monotonic() - started)
            assert again.status_code == 503 and "retry-after" in again.headers

        assert client.get("/health/live").status_code == 200
        assert client.get("/tasks", headers=auth).status_code == 200
        assert client.get(f"/tasks/{uuid.uuid4()}", headers=auth).status_code == 404
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["postgres"] == "ok"
        assert ready.json()["checks"]["kafka"].startswith("failing")
        orphans = list(deps.objects._client.list_objects(  # type: ignore[attr-defined]
            "zip-uploads", prefix=f"{tenant}/", recursive=True))
        # UploadFiles published the file as an artifact; the refused submission released it.
        published = deps.objects.exists(
            "artifacts", f"sha256/{hashlib.sha256(content).hexdigest()}/000000")
    submits_sent = sends.call_count
    # The API's Kafka clients keep reconnecting to the dead broker, logging each refusal, for
    # as long as they exist: free them now, not at the end of the test session.
    del client, deps, sends
    release_inprocess_apps()
    print(f"Kafka outage: first submit 503 after {first_s:.1f} s, then 503 in "
          f"{max(timings) * 1000:.0f} ms at most (gate open); reads and liveness answered; "
          f"uploads left behind {len(orphans)}")
    assert orphans == []
    assert not published, "the refused submission kept its upload's artifact"
    assert submits_sent == 1  # the later submits were refused without waiting on the broker
