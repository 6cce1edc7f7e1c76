"""The order-fulfilment example across the four processes: a pivot at Ship.

Before Ship a failure refunds and releases in reverse order; after Ship it is retried forward,
then left in NeedsAttention with the card charged and the stock reserved, and the webhook says
so; an operator's forward retry finishes the order; a cancellation after Ship is refused.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tasksaga.adapters.object_store import MinioObjectStore
from tasksaga_examples.order_fulfilment import LEDGER_BUCKET, ledger_key
from tests.e2e.checks import log_problems
from tests.e2e.conftest import System, running_system
from tests.integration.http_receivers import QuietHandler, port_of, serving

RECEIVER_HOST = "127.0.0.2"  # allowlisted for local receivers (localrun.service_env)
UNDOING = {"CompensationStarted", "StepCompensationDispatched", "StepCompensated"}


@pytest.fixture(scope="module")
def orders(stack_env: dict[str, str]) -> Iterator[System]:
    with running_system(stack_env,
                        TASKSAGA_TASK_MODULES="tasksaga_examples.order_fulfilment") as running:
        yield running


class Webhooks:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.url = ""

    def of(self, task_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [b for b in self.bodies if b["task_id"] == task_id]


@pytest.fixture(scope="module")
def webhooks() -> Iterator[Webhooks]:
    hooks = Webhooks()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = json.loads(self.read_body())
            with hooks.lock:
                hooks.bodies.append(body)
            self.answer(200)

    with serving(Handler, RECEIVER_HOST) as server:
        hooks.url = f"http://{RECEIVER_HOST}:{port_of(server)}/hooks"
        yield hooks


def submit(system: System, callback_url: str | None = None, **fields: Any) -> str:
    body = {"order_id": f"o-{uuid.uuid4().hex[:12]}", "sku": "MUG-42", "quantity": 2,
            "amount_cents": 1999, "email": "ada@example.com", **fields}
    params = {"callback_url": callback_url} if callback_url else {}
    reply = system.client.post("/tasks/FulfilOrder", json=body, params=params)
    assert reply.status_code == 202, reply.text
    task_id: str = reply.json()["task_id"]
    return task_id


def ledger(system: System, task_id: str) -> set[str]:
    env = system.env
    store = MinioObjectStore(env["TASKSAGA_S3_ENDPOINT"], env["TASKSAGA_S3_ACCESS_KEY"],
                             env["TASKSAGA_S3_SECRET_KEY"])
    records = ("reservation", "charge", "refund", "parcel", "label", "shipment", "notification")
    return {r for r in records if store.exists(LEDGER_BUCKET, ledger_key(task_id, r))}


def audit(system: System, task_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = system.client.get(f"/tasks/{task_id}/audit").json()["entries"]
    return entries


def steps(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["step"]: s for s in status["steps"]}


def wait_for(system: System, task_id: str, predicate: Any, what: str,
             timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = system.status(task_id)
        if status is not None and predicate(status):
            return status
        system.services.check_alive()
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout_s} s: {system.status(task_id)}")


def test_an_order_ships_and_completes_with_every_effect_in_the_ledger(orders: System) -> None:
    task_id = submit(orders)
    status = orders.wait_terminal(task_id)
    assert status["status"] == "Completed"
    assert status["response"]["tracking_number"].startswith("TRK-parcel-")
    assert ledger(orders, task_id) == {"reservation", "charge", "parcel", "label", "shipment",
                                       "notification"}
    assert log_problems(orders.env["TASKSAGA_DATABASE_URL"], [task_id]) == []


def test_a_failure_after_ship_retries_forward_then_needs_attention_without_refund(
    orders: System, webhooks: Webhooks,
) -> None:
    task_id = submit(orders, callback_url=webhooks.url, outage_at="Notify")
    status = orders.wait_terminal(task_id)
    assert status["status"] == "NeedsAttention"
    assert status["failure"]["step"] == "Notify"
    assert status["end_reason"].startswith("step Notify failed after the pivot Ship: "
                                           "ServiceOutage: Notify service unavailable")
    record = steps(status)["Notify"]
    assert (record["status"], record["attempt"]) == ("Failed", 3)  # two retries, forward
    assert {s["step"]: s["status"] for s in status["steps"]} == {
        "ReserveStock": "Completed", "ChargeCard": "Completed", "Pack": "Completed",
        "PrintLabel": "Completed", "Ship": "Completed", "Notify": "Failed"}

    entries = audit(orders, task_id)
    kinds = [e["event_type"] for e in entries]
    assert not UNDOING & set(kinds)
    assert kinds.count("StepRetryScheduled") == 2
    assert entries[-1]["summary"].startswith(
        "needs attention: step Notify failed after the pivot Ship; nothing was compensated")
    # The card stays charged and the stock reserved: the parcel has shipped.
    assert ledger(orders, task_id) == {"reservation", "charge", "parcel", "label", "shipment"}

    deadline = time.monotonic() + 30
    while not [b for b in webhooks.of(task_id) if b["event_type"] == "TaskNeedsAttention"]:
        assert time.monotonic() < deadline, f"no TaskNeedsAttention webhook: {webhooks.of(task_id)}"
        time.sleep(0.2)
    [hook] = [b for b in webhooks.of(task_id) if b["event_type"] == "TaskNeedsAttention"]
    assert (hook["status"], hook["step"]) == ("NeedsAttention", "Notify")
    assert hook["error"]["type"] == "ServiceOutage"

    refused = orders.client.post(f"/tasks/{task_id}/cancel")
    assert refused.status_code == 409  # ended for automation; an operator retries forward
    assert log_problems(orders.env["TASKSAGA_DATABASE_URL"], [task_id]) == []


def test_an_operator_retry_forward_finishes_the_order_after_the_outage(orders: System) -> None:
    task_id = submit(orders, outage_at="Notify", outage_attempts=3)
    assert orders.wait_terminal(task_id)["status"] == "NeedsAttention"
    not_now = orders.client.post(f"/tasks/{submit(orders)}/retry-forward")
    assert not_now.status_code == 409  # only a task in NeedsAttention

    reply = orders.client.post(f"/tasks/{task_id}/retry-forward")
    assert reply.status_code == 202, reply.text
    status = wait_for(orders, task_id, lambda s: s["status"] == "Completed",
                      "the forward retry to finish the order")
    assert steps(status)["Notify"]["attempt"] == 4  # a new attempt, after the three that failed
    kinds = [e["event_type"] for e in audit(orders, task_id)]
    assert "ForwardRetryRequested" in kinds and not UNDOING & set(kinds)
    assert "notification" in ledger(orders, task_id)


def test_a_failure_at_ship_refunds_then_releases_in_reverse_order(orders: System) -> None:
    task_id = submit(orders, outage_at="Ship")
    status = orders.wait_terminal(task_id)
    assert status["status"] == "Failed"
    assert steps(status)["Ship"]["attempt"] == 3
    compensated = [e["step"] for e in audit(orders, task_id)
                   if e["event_type"] == "StepCompensated"]
    assert compensated == ["ChargeCard", "ReserveStock"]
    assert steps(status)["Notify"]["status"] == "NotRun"
    assert ledger(orders, task_id) == {"charge", "refund", "parcel", "label"}
    assert log_problems(orders.env["TASKSAGA_DATABASE_URL"], [task_id]) == []


def test_cancelling_after_ship_is_refused_and_the_order_goes_on(orders: System) -> None:
    task_id = submit(orders, outage_at="Notify", outage_attempts=2)
    wait_for(orders, task_id, lambda s: steps(s)["Ship"]["status"] == "Completed",
             "Ship to complete")
    reply = orders.client.post(f"/tasks/{task_id}/cancel")
    assert reply.status_code == 409
    assert "point of no return" in reply.json()["detail"]
    status = orders.wait_terminal(task_id)
    assert status["status"] == "Completed"
    assert not UNDOING & {e["event_type"] for e in audit(orders, task_id)}
    assert "refund" not in ledger(orders, task_id)
    assert log_problems(orders.env["TASKSAGA_DATABASE_URL"], [task_id]) == []
