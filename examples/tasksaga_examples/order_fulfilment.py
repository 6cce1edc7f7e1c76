"""Order fulfilment with a point of no return: reserve stock, charge the card, pack and print
the label in parallel, ship (the pivot), notify the customer.

Before the parcel ships, a failure compensates in reverse: the card is refunded, the stock
released. Once Ship completed, the parcel is on its way and no refund or release may follow: a
later failure (Notify) is retried forward by its policy, and when the retries run out the task
ends in NeedsAttention for an operator, who can ``POST /tasks/{id}/retry-forward``.

Every effect is a JSON record in the ``order-fulfilment`` bucket under the task's id, keyed by
the step (not the attempt), so a repeated attempt overwrites its own record and the ledger is
what an auditor would check. ``outage_at`` (with ``outage_attempts``) makes one step's service
fail, to see either path: ``outage_at="Ship"`` compensates, ``outage_at="Notify"`` does not.

Enable it with ``TASKSAGA_TASK_MODULES=...,tasksaga_examples.order_fulfilment`` (queue
``orders``).
"""

from __future__ import annotations

import json
from io import BytesIO
from typing import Literal

from pydantic import BaseModel, Field

from tasksaga.core import RetryPolicy, SagaContext, StepContext, TaskDefinition

LEDGER_BUCKET = "order-fulfilment"
StepName = Literal["ReserveStock", "ChargeCard", "Pack", "PrintLabel", "Ship", "Notify"]


class OrderRequest(BaseModel):
    order_id: str = Field(pattern=r"^[A-Za-z0-9-]{1,64}$")
    sku: str = Field(pattern=r"^[A-Z0-9-]{1,32}$")
    quantity: int = Field(ge=1, le=100)
    amount_cents: int = Field(ge=1)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    # Failure injection: this step's service is down for its first ``outage_attempts``
    # attempts (every attempt when None).
    outage_at: StepName | None = None
    outage_attempts: int | None = Field(default=None, ge=1)


class Reservation(BaseModel):
    reservation_id: str
    sku: str
    quantity: int


class Charge(BaseModel):
    charge_id: str
    amount_cents: int


class Parcel(BaseModel):
    parcel_id: str
    items: int


class Label(BaseModel):
    label_id: str


class Shipment(BaseModel):
    tracking_number: str


class Notification(BaseModel):
    sent_to: str


class OrderResponse(BaseModel):
    order_id: str
    tracking_number: str
    charge_id: str


class ServiceOutage(RuntimeError):
    """The step's downstream service did not answer: retried by the step's policy."""


fulfil_order = TaskDefinition(
    "FulfilOrder", queue="orders", request=OrderRequest, response=OrderResponse,
    retry=RetryPolicy(max_retries=2, delay_ms=500, max_delay_ms=2_000),
    timeout_seconds=600, step_timeout_seconds=60,
)


def ledger_key(task_id: str, record: str) -> str:
    return f"{task_id}/{record}.json"


def record_in_ledger(ctx: StepContext[OrderRequest], record: str, body: BaseModel) -> None:
    payload = json.dumps({"order_id": ctx.request.order_id, record: body.model_dump()})
    ctx.store.put_stream(LEDGER_BUCKET, ledger_key(ctx.task_id, record),
                         BytesIO(payload.encode()), "application/json")


def call_service(ctx: StepContext[OrderRequest]) -> None:
    request = ctx.request
    down_for = request.outage_attempts
    if request.outage_at == ctx.step and (down_for is None or ctx.attempt <= down_for):
        raise ServiceOutage(f"{ctx.step} service unavailable (outage_at={ctx.step}, "
                            f"attempt {ctx.attempt})")


@fulfil_order.step("ReserveStock", order=1, reads=())
def reserve_stock(ctx: StepContext[OrderRequest]) -> Reservation:
    call_service(ctx)
    reservation = Reservation(reservation_id=f"res-{ctx.request.order_id}",
                              sku=ctx.request.sku, quantity=ctx.request.quantity)
    record_in_ledger(ctx, "reservation", reservation)
    return reservation


@fulfil_order.compensation("ReserveStock")
def release_stock(ctx: StepContext[OrderRequest], reservation: Reservation) -> None:
    ctx.store.delete(LEDGER_BUCKET, ledger_key(ctx.task_id, "reservation"))


@fulfil_order.step("ChargeCard", order=2, reads=())
def charge_card(ctx: StepContext[OrderRequest]) -> Charge:
    call_service(ctx)
    # Keyed by the step, not the attempt: two attempts that both run charge once.
    charge = Charge(charge_id=f"ch-{ctx.step_key}", amount_cents=ctx.request.amount_cents)
    record_in_ledger(ctx, "charge", charge)
    return charge


@fulfil_order.compensation("ChargeCard")
def refund_card(ctx: StepContext[OrderRequest], charge: Charge) -> None:
    # A charge is never deleted: a refund is a record of its own.
    record_in_ledger(ctx, "refund", charge)


fulfil_order.group("Prepare", order=3)


@fulfil_order.step("Pack", order=3, group="Prepare", reads=("ReserveStock",))
def pack(ctx: StepContext[OrderRequest]) -> Parcel:
    call_service(ctx)
    reservation = ctx.data(Reservation)
    parcel = Parcel(parcel_id=f"parcel-{ctx.request.order_id}", items=reservation.quantity)
    record_in_ledger(ctx, "parcel", parcel)
    return parcel


@fulfil_order.step("PrintLabel", order=3, group="Prepare", reads=())
def print_label(ctx: StepContext[OrderRequest]) -> Label:
    call_service(ctx)
    label = Label(label_id=f"label-{ctx.request.order_id}")
    record_in_ledger(ctx, "label", label)
    return label


@fulfil_order.step("Ship", order=4, pivot=True, reads=("Pack", "PrintLabel"))
def ship(ctx: StepContext[OrderRequest]) -> Shipment:
    """The point of no return: once the carrier has the parcel, nothing before is undone."""
    call_service(ctx)
    parcel, label = ctx.data(Parcel), ctx.data(Label)
    shipment = Shipment(tracking_number=f"TRK-{parcel.parcel_id}-{label.label_id}")
    record_in_ledger(ctx, "shipment", shipment)
    return shipment


@fulfil_order.step("Notify", order=5, reads=("Ship",))
def notify(ctx: StepContext[OrderRequest]) -> Notification:
    call_service(ctx)
    notification = Notification(sent_to=ctx.request.email)
    record_in_ledger(ctx, "notification", notification)
    return notification


@fulfil_order.response_builder
def order_response(ctx: SagaContext[OrderRequest]) -> OrderResponse:
    return OrderResponse(order_id=ctx.request.order_id,
                         tracking_number=ctx.data(Shipment).tracking_number,
                         charge_id=ctx.data(Charge).charge_id)
