"""A task started on version 1 finishes on version 1 after version 2 is deployed, across the
four services: the API, orchestrator and step worker are redeployed with both versions while
the task waits in its second step; version 2 renames the task's first step."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

from tests.e2e.conftest import System, running_system

V1 = "tests.e2e.version_tasks_v1"
BOTH = "tests.e2e.version_tasks_v1,tests.e2e.version_tasks_v2"


def _wait_step(system: System, task_id: str, step: str, status: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        document = system.status(task_id) or {}
        steps = {s["step"]: s["status"] for s in document.get("steps", [])}
        if steps.get(step) == status:
            return
        time.sleep(0.2)
    raise AssertionError(f"{task_id}: step {step} not {status}: {system.status(task_id)}")


def test_a_task_started_on_version_1_finishes_on_version_1_after_version_2_is_deployed(
    stack_env: dict[str, str], tmp_path: Path,
) -> None:
    gate = tmp_path / f"gate-{uuid.uuid4().hex}"
    with running_system(stack_env, TASKSAGA_TASK_MODULES=V1) as system:
        reply = system.client.post("/tasks/VersionedE2E", json={"gate": str(gate)})
        assert reply.status_code == 202, reply.text
        old = reply.json()["task_id"]
        _wait_step(system, old, "Hold", "Running")

        # The redeployment: every service but the notifier restarts with both versions. The
        # worker dies mid-step (SIGKILL): its step command is delivered again to the new one.
        system.services.kill("worker", signal.SIGKILL)
        for name in ("api", "orchestrator"):
            system.services.kill(name, signal.SIGTERM)
        for name in ("api", "orchestrator", "worker"):
            system.services.start(name, {"TASKSAGA_TASK_MODULES": BOTH})
        system.services.wait_until_ready()

        reply = system.client.post("/tasks/VersionedE2E", json={"gate": str(gate)})
        assert reply.status_code == 202, reply.text
        new = reply.json()["task_id"]
        gate.touch()

        finished_old = system.wait_terminal(old, timeout_s=150)
        finished_new = system.wait_terminal(new, timeout_s=150)
    assert finished_old["status"] == "Completed", finished_old
    assert finished_old["response"] == {"steps": {"Prepare": 1, "Hold": 1, "Finish": 1}}
    assert finished_new["status"] == "Completed", finished_new
    assert finished_new["response"] == {"steps": {"Reserve": 2, "Hold": 2, "Finish": 2}}
