"""Capabilities across the processes: a step requiring one no worker has waits visibly, then
runs once a capable worker starts; a worker without ffmpeg refuses the video queue."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from localrun import BIN
from tests.e2e.conftest import System, running_system


@pytest.fixture(scope="module")
def capable(stack_env: dict[str, str]) -> Iterator[System]:
    with running_system(stack_env, TASKSAGA_TASK_MODULES="tests.e2e.capability_tasks",
                        TASKSAGA_CAPABILITY_WATCH_INTERVAL_S="1") as running:
        yield running


def render_step(system: System, task_id: str) -> dict[str, object]:
    status = system.status(task_id)
    assert status is not None
    return next(s for s in status["steps"] if s["step"] == "Render")


def test_a_step_waits_for_a_worker_with_its_capability_then_runs_on_one(
        capable: System) -> None:
    reply = capable.client.post("/tasks/GpuRenderE2E", json={"scene": "forest"})
    assert reply.status_code == 202, reply.text
    task_id = reply.json()["task_id"]
    deadline = time.monotonic() + 20
    while (step := render_step(capable, task_id)).get("waiting_for_capabilities") is None:
        assert time.monotonic() < deadline, f"Render never shown waiting: {step}"
        capable.services.check_alive()
        time.sleep(0.3)
    assert step["status"] == "Running" and step["waiting_for_capabilities"] == ["gpu"]
    deadline = time.monotonic() + 10
    while "no worker with capabilities gpu consumes queue render" not in \
            capable.services.log_tail("orchestrator", 400):
        assert time.monotonic() < deadline, "the orchestrator never said no worker has gpu"
        time.sleep(0.3)

    capable.services.start("worker#gpu", {"TASKSAGA_WORKER_CAPABILITIES": "gpu"})
    status = capable.wait_terminal(task_id, timeout_s=30)
    assert status["status"] == "Completed", status
    assert status["response"] == {"scene": "FOREST"}
    assert "waiting_for_capabilities" not in render_step(capable, task_id)


def test_a_worker_without_ffmpeg_refuses_the_video_queue_at_start_up(
        capable: System, tmp_path: Path) -> None:
    env = {**capable.env, "PATH": str(tmp_path),  # no ffmpeg on it
           "TASKSAGA_TASK_MODULES": "tasksaga_examples.video_pipeline",
           "TASKSAGA_WORKER_QUEUES": "video-processing"}
    done = subprocess.run([str(BIN / "tasksaga-worker")], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert ("queue 'video-processing' has steps requiring capabilities ffmpeg: this worker "
            "lacks ffmpeg") in done.stdout + done.stderr
