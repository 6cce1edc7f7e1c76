"""The four services as real processes against the local stack, one system per test module."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from localrun import REPO, SERVICES, ServiceProcesses, local_token, service_env

pytestmark = pytest.mark.e2e

TERMINAL = {"Completed", "Failed", "Cancelled", "CompensationFailed", "NeedsAttention",
            "Resolved"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class System:
    services: ServiceProcesses
    client: httpx.Client
    prefix: str
    env: dict[str, str]

    def submit_zip(self, files: dict[str, bytes], fail: bool = False,
                   idempotency_key: str | None = None) -> httpx.Response:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self.client.post(
            "/tasks/CreateZip",
            data={"archive_name": "e2e.zip", "fail_at_last_step": str(fail).lower()},
            files=[("files", (name, content, "application/octet-stream"))
                   for name, content in files.items()],
            headers=headers,
        )

    def status(self, task_id: str) -> dict[str, Any] | None:
        reply = self.client.get(f"/tasks/{task_id}")
        return reply.json() if reply.status_code == 200 else None

    def wait_terminal(self, task_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.status(task_id)
            if status is not None and status["status"] in TERMINAL:
                return status
            self.services.check_alive()
            time.sleep(0.2)
        raise AssertionError(f"task {task_id} not terminal after {timeout_s} s: "
                             f"{self.status(task_id)}")


    def wait_terminal_with(self, client: httpx.Client, task_id: str,
                           timeout_s: float = 60.0) -> str:
        """The terminal status of a task, read with ``client`` (another caller's token)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            reply = client.get(f"/tasks/{task_id}")
            if reply.status_code == 200 and reply.json()["status"] in TERMINAL:
                status: str = reply.json()["status"]
                return status
            self.services.check_alive()
            time.sleep(0.3)
        raise AssertionError(f"task {task_id} not terminal after {timeout_s} s")


@contextlib.contextmanager
def running_system(stack_env: dict[str, str], **extra_env: str) -> Iterator[System]:
    prefix = f"e2e{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = service_env(stack_env, port, TASKSAGA_TOPIC_PREFIX=prefix,
                      TASKSAGA_ORCHESTRATOR_INSTANCE_ID=f"{prefix}-orchestrator-0",
                      # The tree under test, before the installed package (a worktree's
                      # services would otherwise run the installed checkout's code).
                      PYTHONPATH=os.pathsep.join(
                          str(p) for p in (REPO / "services", REPO / "examples", REPO)),
                      **extra_env)
    services = ServiceProcesses(env, Path(REPO / ".run" / "e2e-logs" / prefix), port,
                                metrics_ports={name: free_port() for name in SERVICES})
    try:
        services.start_all()
        token = local_token(tenant="default", subject="e2e", lifetime_s=4 * 3600,
                            secret=env["TASKSAGA_AUTH_HS256_SECRET"])
        with httpx.Client(base_url=services.api_url, timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            yield System(services, client, prefix, env)
    finally:
        services.stop_all()


@pytest.fixture(scope="module")
def system(stack_env: dict[str, str]) -> Iterator[System]:
    with running_system(stack_env) as running:
        yield running
