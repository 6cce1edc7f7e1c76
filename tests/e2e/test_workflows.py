"""Code-first workflows across the four services (api, orchestrator, worker, notifier):
kill -9 of the orchestrator at each await of a six-await workflow (each step runs once, the
sleep crosses a restart), a workflow awaiting a DSL child saga (wf.child) with a kill -9 while
the child runs, cancellation during a sleep and during a step (the except block
compensates), a non-deterministic deployment caught and fixed, and a long workflow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from localrun import BIN, local_token
from tasksaga.core.children import child_task_id
from tests.e2e.conftest import System, running_system
from tests.e2e.workflow_tasks import LEDGER_DDL

MODULES = "tests.e2e.workflow_tasks,tests.e2e.workflow_child_tasks"
LONG_STEPS = 1000  # ~16 s since an ended step deletes its deadline timers (42 s before)
# The await each kill lands at: the step (or wait) the body is stopped at.
AWAITS = [("work", "Running"), ("sleep", "Waiting"), ("work#2", "Running"),
          ("work#4", "Running"), ("go", "Waiting"), ("work#5", "Running")]


@pytest.fixture(scope="module")
def system(stack_env: dict[str, str]) -> Iterator[System]:
    with psycopg.connect(stack_env["TASKSAGA_DATABASE_URL"], autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
    with running_system(stack_env, TASKSAGA_TASK_MODULES=MODULES) as running:
        yield running


def submit(system: System, task_type: str, **request: Any) -> str:
    reply = system.client.post(f"/tasks/{task_type}", json=request)
    assert reply.status_code == 202, reply.text
    task_id: str = reply.json()["task_id"]
    return task_id


def wait_step(system: System, task_id: str, step: str, status: str,
              timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        document = system.status(task_id) or {"steps": []}
        if any(s["step"] == step and s["status"] == status for s in document["steps"]):
            return
        time.sleep(0.05)
    raise AssertionError(f"step {step} of {task_id} not {status}: {system.status(task_id)}")


def ledger(system: System, task_id: str) -> dict[str, int]:
    with psycopg.connect(system.env["TASKSAGA_DATABASE_URL"], autocommit=True) as conn:
        rows = conn.execute("SELECT step, count(*) FROM workflow_e2e_ledger WHERE task_id = %s"
                            " GROUP BY step", (task_id,)).fetchall()
    return {step: int(count) for step, count in rows}


def restart_orchestrator(system: System, **env: str) -> None:
    system.services.kill("orchestrator", signal.SIGKILL)
    system.services.start("orchestrator", env or None)


def test_killed_at_each_await_the_workflow_completes_running_each_step_once(
        system: System) -> None:
    task_id = submit(system, "SixAwaits", step_ms=1500)
    for step, status in AWAITS:
        wait_step(system, task_id, step, status)
        restart_orchestrator(system)  # kill -9 at this await, then a new orchestrator
        if step == "go":
            reply = system.client.post(f"/tasks/{task_id}/signals/go", json={})
            assert reply.status_code == 202, reply.text
    final = system.wait_terminal(task_id, timeout_s=90)
    assert final["status"] == "Completed", final
    assert final["response"] == {"n": 7}
    awaits = [s["step"] for s in final["steps"]]  # the status: awaits as they completed
    assert awaits[:3] == ["work", "sleep", "work#2"] and awaits[-2:] == ["go", "work#5"]
    assert ledger(system, task_id) == {"work": 1, "work#2": 1, "work#3": 1, "work#4": 1,
                                       "work#5": 1}


def test_a_workflow_awaits_its_child_saga_across_a_kill_of_the_orchestrator(
        system: System) -> None:
    task_id = submit(system, "AwaitChild", step_ms=2000)
    child_id = child_task_id(task_id, "WfE2eChild", 1)
    wait_step(system, task_id, "WfE2eChild", "Running")
    wait_step(system, child_id, "Pack", "Running")
    restart_orchestrator(system)  # kill -9 while the child's step runs
    final = system.wait_terminal(task_id, timeout_s=90)
    assert final["status"] == "Completed", final
    assert final["response"] == {"n": 3}  # the child's two steps, then work
    assert [(c["step"], c["task_id"], c["status"]) for c in final["children"]] == [
        ("WfE2eChild", child_id, "Completed")]
    child = system.status(child_id) or {}
    assert child["status"] == "Completed" and child["parent"]["task_id"] == task_id, child
    assert ledger(system, child_id) == {"Pack": 1, "Seal": 1}  # the child ran each step once
    assert ledger(system, task_id) == {"work": 1}
    trail = [e["summary"] for e in
             system.client.get(f"/tasks/{task_id}/audit").json()["entries"]]
    assert sum("started child task WfE2eChild" in line for line in trail) == 1, trail


@pytest.mark.parametrize("mode, stopped_at", [("sleep", ("sleep", "Waiting")),
                                              ("step", ("work", "Running"))])
def test_cancellation_at_an_await_runs_the_except_compensation(
        system: System, mode: str, stopped_at: tuple[str, str]) -> None:
    task_id = submit(system, "CancelMe", mode=mode, step_ms=20_000 if mode == "step" else 0)
    wait_step(system, task_id, *stopped_at)
    cancelled_at = time.monotonic()
    assert system.client.post(f"/tasks/{task_id}/cancel").status_code == 202
    final = system.wait_terminal(task_id, timeout_s=60)
    assert final["status"] == "Cancelled", final
    assert ledger(system, task_id).get("undo") == 1
    assert time.monotonic() - cancelled_at < 15  # the 20 s step did not hold the task


def test_a_non_deterministic_deployment_is_suspended_and_resumes_after_a_fix(
        system: System) -> None:
    task_id = submit(system, "Switch")
    wait_step(system, task_id, "go", "Waiting")
    restart_orchestrator(system, TASKSAGA_E2E_WORKFLOW_VARIANT="changed")
    assert system.client.post(f"/tasks/{task_id}/signals/go", json={}).status_code == 202
    suspended = system.wait_terminal(task_id)
    assert suspended["status"] == "NeedsAttention", suspended
    assert ("non-determinism at await #1 (switch line" in suspended["end_reason"]
            and "the history records step 'work', the deployed code issued step 'other'"
            in suspended["end_reason"]), suspended["end_reason"]
    restart_orchestrator(system, TASKSAGA_E2E_WORKFLOW_VARIANT="patched")
    assert system.client.post(f"/tasks/{task_id}/retry-forward").status_code == 202
    deadline = time.monotonic() + 60
    while (system.status(task_id) or {}).get("status") != "Completed":
        assert time.monotonic() < deadline, system.status(task_id)
        time.sleep(0.2)
    assert ledger(system, task_id) == {"work": 1, "work#2": 1}  # never "other"
    restart_orchestrator(system)  # back to the original code for the other tests


def test_a_long_workflow_runs_its_steps_one_after_another(system: System) -> None:
    started = time.monotonic()
    task_id = submit(system, "LongLoop", steps=LONG_STEPS)
    final = system.wait_terminal(task_id, timeout_s=300)
    elapsed = time.monotonic() - started
    assert final["status"] == "Completed" and final["response"] == {"n": LONG_STEPS}, final
    print(f"{LONG_STEPS}-step workflow: {elapsed:.1f} s end to end "
          f"({elapsed / LONG_STEPS * 1000:.1f} ms per step)")


def test_the_tools_show_a_workflow_like_a_saga_its_awaits_as_steps(system: System) -> None:
    """The CLI follows it live to its end, shows its awaits as steps, and the dashboard's
    timeline draws a bar per await."""
    token = local_token(tenant="default", subject="e2e-cli",
                        secret=system.env["TASKSAGA_AUTH_HS256_SECRET"])
    env = {**os.environ, "TASKSAGA_URL": system.services.api_url, "TASKSAGA_TOKEN": token,
           "TASKSAGA_CONFIG": "/nonexistent/tasksaga.toml", "COLUMNS": "200"}
    task_id = submit(system, "LongLoop", steps=3)
    watched = subprocess.run([str(BIN / "tasksaga"), "watch", task_id], env=env, text=True,
                             capture_output=True, timeout=60)
    assert watched.returncode == 0, watched.stdout + watched.stderr  # exit 0: Completed
    assert "quick#3" in watched.stdout and "Completed" in watched.stdout, watched.stdout
    shown = subprocess.run([str(BIN / "tasksaga"), "show", task_id, "--json"], env=env,
                           text=True, capture_output=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    steps = {s["step"]: s["status"] for s in json.loads(shown.stdout)["steps"]}
    assert steps == {"quick": "Completed", "quick#2": "Completed", "quick#3": "Completed"}
    timeline = system.client.get(f"/ui/api/tasks/{task_id}/timeline").json()
    bars = {lane["step"]: [b["outcome"] for b in lane["bars"]] for lane in timeline["lanes"]
            if lane["bars"]}
    assert bars == {"quick": ["completed"], "quick#2": ["completed"],
                    "quick#3": ["completed"]}, timeline
