"""The order of ``order_fulfilment.py`` as a code-first workflow: the saga by try/except.

Reserve stock, charge the card, pack and print the label in parallel, ship, notify. A failure
before the parcel ships undoes what was done, in reverse (refund, then release), by the
``except`` block; once ``Ship`` completed nothing is undone. The steps write the same ledger
records as the saga's (bucket ``order-fulfilment``), so the two are compared record for
record. One difference: a ``Notify`` that fails for good after the shipment leaves the saga in
NeedsAttention (its pivot rule); the workflow ends Failed with nothing compensated, its body
having decided so.

Enable it with ``TASKSAGA_TASK_MODULES=...,tasksaga_examples.order_workflow`` (queue
``orders``).
"""

from __future__ import annotations

from pydantic import BaseModel

from tasksaga.core import RetryPolicy, StepContext
from tasksaga.workflow import StepFailed, WorkflowCancelled, WorkflowContext, step, workflow
from tasksaga_examples.order_fulfilment import (
    LEDGER_BUCKET,
    Charge,
    Label,
    Notification,
    OrderRequest,
    OrderResponse,
    Parcel,
    Reservation,
    Shipment,
    call_service,
    ledger_key,
    record_in_ledger,
)

_RETRY = RetryPolicy(max_retries=2, delay_ms=500, max_delay_ms=2_000)


@step(name="ReserveStock", retry=_RETRY)
def reserve_stock(ctx: StepContext[OrderRequest], order: OrderRequest) -> Reservation:
    call_service(ctx)
    reservation = Reservation(reservation_id=f"res-{order.order_id}", sku=order.sku,
                              quantity=order.quantity)
    record_in_ledger(ctx, "reservation", reservation)
    return reservation


@step(name="ReleaseStock", retry=_RETRY)
def release_stock(ctx: StepContext[OrderRequest], reservation: Reservation) -> None:
    ctx.store.delete(LEDGER_BUCKET, ledger_key(ctx.task_id, "reservation"))


@step(name="ChargeCard", retry=_RETRY)
def charge_card(ctx: StepContext[OrderRequest], order: OrderRequest) -> Charge:
    call_service(ctx)
    charge = Charge(charge_id=f"ch-{ctx.step_key}", amount_cents=order.amount_cents)
    record_in_ledger(ctx, "charge", charge)
    return charge


@step(name="RefundCard", retry=_RETRY)
def refund_card(ctx: StepContext[OrderRequest], charge: Charge) -> None:
    record_in_ledger(ctx, "refund", charge)


@step(name="Pack", retry=_RETRY)
def pack(ctx: StepContext[OrderRequest], reservation: Reservation) -> Parcel:
    call_service(ctx)
    parcel = Parcel(parcel_id=f"parcel-{ctx.request.order_id}", items=reservation.quantity)
    record_in_ledger(ctx, "parcel", parcel)
    return parcel


@step(name="PrintLabel", retry=_RETRY)
def print_label(ctx: StepContext[OrderRequest], order: OrderRequest) -> Label:
    call_service(ctx)
    label = Label(label_id=f"label-{order.order_id}")
    record_in_ledger(ctx, "label", label)
    return label


class ShipInput(BaseModel):
    parcel: Parcel
    label: Label


@step(name="Ship", retry=_RETRY)
def ship(ctx: StepContext[OrderRequest], shipping: ShipInput) -> Shipment:
    call_service(ctx)
    shipment = Shipment(
        tracking_number=f"TRK-{shipping.parcel.parcel_id}-{shipping.label.label_id}")
    record_in_ledger(ctx, "shipment", shipment)
    return shipment


@step(name="Notify", retry=_RETRY)
def notify(ctx: StepContext[OrderRequest], order: OrderRequest) -> Notification:
    call_service(ctx)
    notification = Notification(sent_to=order.email)
    record_in_ledger(ctx, "notification", notification)
    return notification


@workflow("PlaceOrderWorkflow", queue="orders", request=OrderRequest, response=OrderResponse,
          timeout_seconds=600, step_timeout_seconds=60)
async def place_order(wf: WorkflowContext, order: OrderRequest) -> OrderResponse:
    reservation = await wf.step(reserve_stock, order)
    try:
        charge = await wf.step(charge_card, order)
    except (StepFailed, WorkflowCancelled):
        with wf.shield():
            await wf.step(release_stock, reservation)
        raise
    try:
        parcel, label = await wf.all(wf.step(pack, reservation), wf.step(print_label, order))
        shipment = await wf.step(ship, ShipInput(parcel=parcel, label=label))
    except (StepFailed, WorkflowCancelled):
        with wf.shield():  # in reverse, as the saga compensates
            await wf.step(refund_card, charge)
            await wf.step(release_stock, reservation)
        raise
    await wf.step(notify, order)  # past the shipment: nothing is undone any more
    return OrderResponse(order_id=order.order_id, tracking_number=shipment.tracking_number,
                         charge_id=charge.charge_id)
