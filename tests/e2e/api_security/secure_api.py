"""The API under test for the security checks: its settings, an authenticated client per
tenant, and helpers the test files of this folder share.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from tests.e2e.conftest import System

MIB = 1024 * 1024
ISSUER = "tasksaga-local"
LIMITS = {
    "TASKSAGA_TASK_MODULES": "tasksaga_examples.zip_archive,tests.e2e.security_tasks",
    "TASKSAGA_AUTH_ISSUER": ISSUER,
    "TASKSAGA_API_MAX_JSON_BYTES": str(64 * 1024),
    "TASKSAGA_API_MAX_REQUEST_BYTES": str(2 * MIB),
    "TASKSAGA_API_MAX_FILE_BYTES": str(512 * 1024),
    "TASKSAGA_API_BODY_IDLE_TIMEOUT_S": "2",
    "TASKSAGA_API_BODY_TOTAL_TIMEOUT_S": "6",
    "TASKSAGA_API_RATE_LIMIT_REQUESTS": "300",
    "TASKSAGA_API_RATE_LIMIT_WINDOW_S": "60",
}
PUBLIC = {"/health/live", "/health/ready"}


@dataclass
class Secure:
    system: System

    @property
    def url(self) -> str:
        return self.system.services.api_url

    @property
    def secret(self) -> str:
        return self.system.env["TASKSAGA_AUTH_HS256_SECRET"]

    def token(self, tenant: str, *roles: str, subject: str = "user") -> str:
        from tasksaga.api.identity import mint_token

        return mint_token(self.secret, subject=subject, tenant=tenant, roles=list(roles),
                          issuer=ISSUER)

    def client(self, tenant: str, *roles: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30,
                            headers={"Authorization": f"Bearer {self.token(tenant, *roles)}"})

    def openapi(self) -> dict[str, Any]:
        with self.client("docs") as client:
            spec: dict[str, Any] = client.get("/openapi.json").raise_for_status().json()
        return spec

    def greet(self, client: httpx.Client, name: str, key: str | None = None) -> str:
        headers = {"Idempotency-Key": key} if key else {}
        reply = client.post("/tasks/Greet", json={"name": name}, headers=headers)
        assert reply.status_code == 202, reply.text
        task_id: str = reply.json()["task_id"]
        return task_id

    def wait_completed(self, client: httpx.Client, task_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            reply = client.get(f"/tasks/{task_id}")
            if reply.status_code == 200 and reply.json()["status"] == "Completed":
                document: dict[str, Any] = reply.json()
                return document
            time.sleep(0.5)
        raise AssertionError(f"task {task_id} did not complete: {reply.text}")


def new_tenant() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def api_operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [(method.upper(), path) for path, item in spec["paths"].items()
            for method in item if method in ("get", "post", "put", "patch", "delete")]


def fill_path(path: str, task_id: str) -> str:
    return path.replace("{task_id}", task_id).replace("{task_type}", "Greet")
