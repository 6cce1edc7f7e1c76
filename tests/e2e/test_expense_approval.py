"""The expense approval example across the four processes: a human step (wait_for, signalled
over HTTP) and a durable sleep that survives a kill -9 of the orchestrator."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from localrun import local_token
from tests.e2e.checks import log_problems
from tests.e2e.conftest import System, running_system


@pytest.fixture(scope="module")
def approvals(stack_env: dict[str, str]) -> Iterator[System]:
    with running_system(stack_env,
                        TASKSAGA_TASK_MODULES="tasksaga_examples.expense_approval") as running:
        yield running


@pytest.fixture(scope="module")
def approver(approvals: System) -> Iterator[httpx.Client]:
    token = local_token(tenant="default", subject="approver-1", roles=("approver",),
                        secret=approvals.env["TASKSAGA_AUTH_HS256_SECRET"])
    with httpx.Client(base_url=approvals.services.api_url, timeout=60,
                      headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


def submit(system: System, pay_after: datetime | None = None) -> str:
    body = {"expense_id": f"e-{uuid.uuid4().hex[:12]}", "amount_cents": 4200,
            "pay_after": pay_after.isoformat() if pay_after else None}
    reply = system.client.post("/tasks/ExpenseApproval", json=body)
    assert reply.status_code == 202, reply.text
    task_id: str = reply.json()["task_id"]
    return task_id


def steps(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["step"]: s for s in status["steps"]}


def wait_step(system: System, task_id: str, step: str, wanted: str,
              timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = system.status(task_id)
        if status is not None and steps(status)[step]["status"] == wanted:
            return status
        system.services.check_alive()
        time.sleep(0.1)
    raise AssertionError(f"{step} not {wanted} within {timeout_s} s: {system.status(task_id)}")


def send(client: httpx.Client, task_id: str, body: Any, signal_id: str | None = None,
         name: str = "Approve") -> httpx.Response:
    headers = {"Signal-Id": signal_id} if signal_id else {}
    return client.post(f"/tasks/{task_id}/signals/{name}", json=body, headers=headers)


def events_of(system: System, task_id: str) -> list[str]:
    entries = system.client.get(f"/tasks/{task_id}/audit").json()["entries"]
    return [e["event_type"] for e in entries]


APPROVED = {"approver": "ann", "approved": True, "note": "ok"}


def test_an_approval_then_a_cool_down_that_survives_a_killed_orchestrator(
    approvals: System, approver: httpx.Client,
) -> None:
    pay_after = datetime.now(UTC) + timedelta(seconds=8)
    task_id = submit(approvals, pay_after)
    status = wait_step(approvals, task_id, "Approve", "Waiting")
    assert "waiting_until" in steps(status)["Approve"]  # the approval's timeout

    # Authorization, validation and an unknown signal, before anything is accepted.
    assert send(approvals.client, task_id, APPROVED).status_code == 403  # no approver role
    invalid = send(approver, task_id, {"approver": "", "approved": "maybe"})
    assert invalid.status_code == 422, invalid.text
    assert {e["loc"][-1] for e in invalid.json()["detail"]["errors"]} == {"approver", "approved"}
    assert send(approver, task_id, APPROVED, name="Nope").status_code == 404

    first = send(approver, task_id, APPROVED, signal_id="click-1")
    assert first.status_code == 202 and first.json()["status"] == "signal accepted"
    status = wait_step(approvals, task_id, "CoolDown", "Waiting")
    waiting_until = datetime.fromisoformat(steps(status)["CoolDown"]["waiting_until"])
    assert abs((waiting_until - pay_after).total_seconds()) < 0.01
    again = send(approver, task_id, APPROVED, signal_id="click-1")
    assert again.status_code == 202 and again.json()["status"] == "already_received"

    approvals.services.kill("orchestrator", signal.SIGKILL)  # while it sleeps
    time.sleep(1.0)
    approvals.services.start("orchestrator")
    status = approvals.wait_terminal(task_id, timeout_s=90)
    assert status["status"] == "Completed", status
    assert status["response"] == {"payment_id": status["response"]["payment_id"],
                                  "approver": "ann"}
    woke_at = datetime.fromisoformat(steps(status)["CoolDown"]["updated_at"])
    late_s = (woke_at - pay_after).total_seconds()
    assert 0 <= late_s < 10, late_s  # not a moment before the cool-down ended, nor long after
    print(f"sleep across an orchestrator kill -9: woke {late_s:.3f} s after its time")
    assert events_of(approvals, task_id).count("SignalReceived") == 1
    late = send(approver, task_id, APPROVED, signal_id="click-2")
    assert late.status_code == 409 and "Completed" in late.text
    assert log_problems(approvals.env["TASKSAGA_DATABASE_URL"], [task_id]) == []


def test_a_signal_sent_before_the_step_is_reached_is_kept(
    approvals: System, approver: httpx.Client,
) -> None:
    task_id = submit(approvals)
    reply = send(approver, task_id, APPROVED, signal_id="early")  # Accepted, or HoldFunds runs
    assert reply.status_code == 202, reply.text
    status = approvals.wait_terminal(task_id)
    assert status["status"] == "Completed", status
    kinds = events_of(approvals, task_id)
    assert kinds.count("SignalReceived") == 1 and kinds.count("StepWaiting") == 2


def test_a_rejection_and_a_cancellation_while_waiting_release_the_hold(
    approvals: System, approver: httpx.Client,
) -> None:
    rejected = submit(approvals)
    wait_step(approvals, rejected, "Approve", "Waiting")
    send(approver, rejected, {"approver": "bob", "approved": False, "note": "no"})
    status = approvals.wait_terminal(rejected)
    assert status["status"] == "Failed"
    assert steps(status)["HoldFunds"]["status"] == "Compensated"

    cancelled = submit(approvals)
    wait_step(approvals, cancelled, "Approve", "Waiting")
    assert approvals.client.post(f"/tasks/{cancelled}/cancel").status_code == 202
    status = approvals.wait_terminal(cancelled)
    assert status["status"] == "Cancelled"
    assert steps(status)["HoldFunds"]["status"] == "Compensated"
    assert steps(status)["Approve"]["status"] == "Failed"
    refused = send(approver, cancelled, APPROVED)
    assert refused.status_code == 409, refused.text


def test_no_approval_in_time_takes_the_failure_path(stack_env: dict[str, str]) -> None:
    with running_system(stack_env, TASKSAGA_TASK_MODULES="tasksaga_examples.expense_approval",
                        TASKSAGA_APPROVAL_TIMEOUT_S="3") as system:
        token = local_token(tenant="default", subject="approver-1", roles=("approver",),
                            secret=system.env["TASKSAGA_AUTH_HS256_SECRET"])
        task_id = submit(system)
        status = wait_step(system, task_id, "Approve", "Waiting")
        waiting_until = datetime.fromisoformat(steps(status)["Approve"]["waiting_until"])
        status = system.wait_terminal(task_id)
        assert status["status"] == "Failed", status
        approve = steps(status)["Approve"]
        assert (approve["status"], approve["error_type"]) == ("Failed", "SignalTimedOut")
        assert steps(status)["HoldFunds"]["status"] == "Compensated"
        assert datetime.fromisoformat(approve["updated_at"]) >= waiting_until
        with httpx.Client(base_url=system.services.api_url, timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            late = send(client, task_id, APPROVED)
        assert late.status_code == 409, late.text
        assert log_problems(system.env["TASKSAGA_DATABASE_URL"], [task_id]) == []
