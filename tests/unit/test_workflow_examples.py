"""The examples' workflows: the barista of seed 002, and the order workflow that leaves the
same ledger as the order saga (order_fulfilment.py) on success, on a failure before the
shipment (refund, then release) and on cancellation, and the trip workflow whose BookHotel
child (wf.child) ends as the trip saga's child step leaves it."""

from __future__ import annotations

import json

import pytest

from tasksaga.core import StepContext, TaskDefinition
from tasksaga.core import events as ev
from tasksaga.core.children import child_task_id
from tasksaga.core.state import TaskStatus
from tasksaga.testing import SagaTestRun, TaskRun
from tasksaga_examples import trip_booking as trips
from tasksaga_examples.barista import CoffeeOrder, Served, perform_duties
from tasksaga_examples.order_fulfilment import LEDGER_BUCKET, OrderRequest, fulfil_order
from tasksaga_examples.order_workflow import place_order
from tasksaga_examples.trip_workflow import plan_trip


def test_the_barista_pays_pours_coffee_and_milk_in_parallel_then_serves() -> None:
    run = SagaTestRun(perform_duties)
    task = run.submit(CoffeeOrder(drink="flat white", customer="ann"))
    task.assert_completed()
    served = task.response(Served)
    recorded = [e for e in task.events if isinstance(e, ev.WorkflowValueRecorded)]
    assert served.transaction_id == json.loads(recorded[0].data_json)
    kinds = [(type(e).__name__, getattr(e, "step", "")) for e in task.events]
    pour_milk = kinds.index(("StepDispatched", "pour_milk"))
    assert pour_milk < kinds.index(("StepCompleted", "pour_coffee"))  # in parallel
    assert [s for s, _ in task.dispatched] == ["pay", "pour_coffee", "pour_milk", "serve"]


def ledger(run: SagaTestRun, task_id: str) -> dict[str, str]:
    prefix = f"{task_id}/"
    return {key.removeprefix(prefix): run.objects.read(LEDGER_BUCKET, key).decode()
            for key in run.objects.keys(LEDGER_BUCKET) if key.startswith(prefix)}


def both(request: OrderRequest, cancel_during: str | None = None,
         ) -> tuple[tuple[TaskStatus, dict[str, str]], tuple[TaskStatus, dict[str, str]]]:
    results = []
    for definition in (fulfil_order, place_order):
        run = SagaTestRun(definition)
        if cancel_during:
            def cancel(ctx: StepContext[OrderRequest], run: SagaTestRun = run) -> None:
                run.cancel(ctx.task_id)

            run.faults.during(cancel_during, cancel)
        task = run.submit(request, task_id="order-1")
        results.append((task.status, ledger(run, "order-1")))
    return results[0], results[1]


@pytest.mark.parametrize("outage_at", [None, "ChargeCard", "Pack", "Ship"])
def test_the_order_workflow_leaves_the_ledger_the_order_saga_leaves(
        outage_at: str | None) -> None:
    request = OrderRequest(order_id="o-1", sku="SKU-1", quantity=2, amount_cents=990,
                           email="buyer@example.com", outage_at=outage_at)
    saga, flow = both(request)
    assert flow == saga
    if outage_at in ("Pack", "Ship"):
        assert "refund.json" in flow[1] and "reservation.json" not in flow[1]


def test_a_cancelled_order_workflow_compensates_as_the_saga_does() -> None:
    request = OrderRequest(order_id="o-2", sku="SKU-1", quantity=1, amount_cents=100,
                           email="buyer@example.com")
    saga, flow = both(request, cancel_during="Pack")
    assert saga[0] is flow[0] is TaskStatus.CANCELLED
    assert flow[1] == saga[1]


def trip_outcome(parent: TaskDefinition, child_step: str, cancel_during: str | None = None,
                 **options: object) -> tuple[TaskStatus, TaskStatus, list[str], list[str]]:
    """(parent status, child status, parent's ledger records, child's ledger records)."""
    run = SagaTestRun(parent, trips.book_hotel)
    if cancel_during:
        run.faults.during(cancel_during, lambda ctx: run.cancel("trip-1"))
    task = run.submit(trips.TripRequest(trip_id="T1", city="Oslo", nights=2, amount_cents=990,
                                        **options),
                      task_type=parent.name, task_id="trip-1")
    run.run_until_settled()
    child = TaskRun(run.store, child_task_id("trip-1", child_step, 1))

    def records(task_id: str) -> list[str]:
        return sorted(k.split("/", 1)[1] for k in run.objects.keys(trips.LEDGER_BUCKET)
                      if k.startswith(f"{task_id}/"))

    return task.status, child.status, records("trip-1"), records(child.task_id)


@pytest.mark.parametrize("options", [{}, {"fail_charge": True}, {"fail_confirm": True},
                                     {"cancel_during": "ConfirmRoom"}],
                         ids=["completed", "charge_fails", "hotel_fails", "cancelled"])
def test_the_trip_workflow_and_its_child_end_as_the_trip_saga_and_its_child(
        options: dict[str, object]) -> None:
    saga = trip_outcome(trips.book_trip, "Hotel", **options)  # type: ignore[arg-type]
    flow = trip_outcome(plan_trip, "BookHotel", **options)  # type: ignore[arg-type]
    assert flow == saga
    if options == {"fail_charge": True}:
        assert flow[1] is TaskStatus.CANCELLED  # wf.compensate_child undid the hotel
