"""Abuse: pages are capped, bulk cancel has a dry run and stays within the tenant, and a
bursting tenant is rate-limited across API replicas while another tenant passes.

Runs the four services as processes (one system for this folder). Each test prints its figure.
"""

from __future__ import annotations

import time

import httpx

from tests.e2e.api_security.secure_api import Secure, new_tenant
from tests.e2e.conftest import free_port


def test_pages_are_capped(secure: Secure) -> None:
    with secure.client(new_tenant(), "greeter") as client:
        listing = client.get("/tasks", params={"limit": 10**6}).json()
        task_id = secure.greet(client, "pages")
        secure.wait_completed(client, task_id)
        audit = client.get(f"/tasks/{task_id}/audit", params={"limit": 10**6}).json()
    print(f"S5 pages: limit=10^6 gives {listing['limit']} (tasks), {audit['limit']} (audit)")
    assert listing["limit"] == 100 and audit["limit"] == 1000


def test_search_filters_and_bulk_cancel_with_a_dry_run(secure: Secure) -> None:
    tenant = new_tenant()
    with secure.client(tenant, "greeter") as client:
        greeted = secure.greet(client, "find-me", key="search-key")
        secure.wait_completed(client, greeted)
        slow = [client.post("/tasks/Slow", json={"seconds": 60}).json()["task_id"]
                for _ in range(3)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = client.get("/tasks", params={"task_type": "Slow",
                                                   "status": "Running"}).json()["tasks"]
            if len(running) == 3:
                break
            time.sleep(0.5)
        by_key = client.get("/tasks", params={"idempotency_key": "search-key"}).json()
        future = client.get("/tasks", params={"submitted_after": "2999-01-01T00:00:00Z"})
        completed = client.get("/tasks", params={"status": ["Completed"]}).json()["tasks"]
        dry = client.post("/bulk/cancel", params={"task_type": "Slow"}).json()
        still = client.get("/tasks", params={"status": "Running"}).json()["tasks"]
        done = client.post("/bulk/cancel", params={"task_type": "Slow", "dry_run": "false"})
        ended = {task_id: secure.system.wait_terminal_with(client, task_id) for task_id in slow}
    with secure.client(new_tenant(), "greeter") as other:
        foreign = other.post("/bulk/cancel", params={"dry_run": "true"}).json()
    assert [t["task_id"] for t in by_key["tasks"]] == [greeted]
    assert future.json()["tasks"] == []
    assert [t["task_id"] for t in completed] == [greeted]
    assert dry == {"matched": 3, "dry_run": True} and len(still) == 3
    assert done.json()["cancel_requested"] == 3
    assert set(ended.values()) == {"Cancelled"}
    assert foreign["matched"] == 0
    print(f"search: by key 1, future 0, completed 1; bulk cancel dry run {dry['matched']}, "
          f"then {done.json()['cancel_requested']} cancelled; another tenant matched 0")


def test_a_bursting_tenant_is_rate_limited_across_replicas(secure: Secure) -> None:
    """S5: one tenant's burst gets 429 with Retry-After, counted across two API replicas
    (the counter lives in Postgres), while another tenant's requests all pass.

    Two replicas of the test's own, with an hour's window: windows are fixed (aligned to
    multiples of their length), and a burst of 400 requests on a loaded machine can take
    longer than a minute or straddle a minute's boundary, where a second window's 300 begin."""
    services = secure.system.services
    window_s = 3600
    if window_s - time.time() % window_s < 180:  # the burst would straddle the hour
        time.sleep(window_s - time.time() % window_s + 1)
    replicas = []
    for name in ("api#2", "api#3"):
        port = free_port()
        services.start(name, {"TASKSAGA_API_PORT": str(port),
                              "TASKSAGA_API_RATE_LIMIT_WINDOW_S": str(window_s)})
        replicas.append(f"http://127.0.0.1:{port}")
    for replica in replicas:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{replica}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
    burst, calm = new_tenant(), new_tenant()
    burst_headers = {"Authorization": f"Bearer {secure.token(burst)}"}
    calm_headers = {"Authorization": f"Bearer {secure.token(calm)}"}
    statuses: list[int] = []
    retry_after: list[str] = []
    calm_latencies: list[float] = []
    calm_refused = 0
    with httpx.Client(timeout=30) as client:
        for index in range(400):
            base = replicas[index % 2]
            reply = client.get(f"{base}/tasks", params={"limit": 1}, headers=burst_headers)
            statuses.append(reply.status_code)
            if reply.status_code == 429:
                retry_after.append(reply.headers["retry-after"])
            if index % 20 == 0:
                started = time.monotonic()
                calm_reply = client.get(f"{base}/tasks", params={"limit": 1},
                                        headers=calm_headers)
                calm_latencies.append(time.monotonic() - started)
                calm_refused += calm_reply.status_code != 200
    services.kill("api#2")
    services.kill("api#3")
    allowed = statuses.count(200)
    calm_latencies.sort()
    p99 = calm_latencies[int(0.99 * (len(calm_latencies) - 1))]
    print(f"S5 burst over 2 replicas: {allowed} allowed of 400 (limit 300/{window_s} s), "
          f"{statuses.count(429)} got 429 (Retry-After {retry_after[:1]} s); other tenant "
          f"refused {calm_refused}, p99 {p99 * 1000:.0f} ms")
    assert allowed == 300
    assert retry_after and all(int(v) >= 1 for v in retry_after)
    assert calm_refused == 0
