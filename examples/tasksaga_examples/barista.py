"""The barista of seed 002 (D·ASYNC) as a code-first workflow: take the order (the payment
terminal charges the card), make the coffee (coffee and milk poured in parallel, WhenAll),
serve. Each ``await`` is saved: a crash anywhere resumes at that point without paying or
pouring again.

Sub-routines are plain ``async def`` helpers the body awaits; what they await is saved the
same way. Enable it with ``TASKSAGA_TASK_MODULES=...,tasksaga_examples.barista`` (queue
``barista``).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from tasksaga.core import StepContext
from tasksaga.workflow import WorkflowContext, step, workflow


class CoffeeOrder(BaseModel):
    drink: str = Field(min_length=1, max_length=40)
    customer: str = Field(min_length=1, max_length=40)
    price_cents: int = Field(default=350, ge=1)


class Payment(BaseModel):
    transaction_id: str
    amount_cents: int


class Cup(BaseModel):
    drink: str
    coffee: bool = False
    milk: bool = False


class Served(BaseModel):
    customer: str
    drink: str
    transaction_id: str


class PaymentRequest(BaseModel):
    transaction_id: str
    amount_cents: int


@step(queue="barista")
def pay(ctx: StepContext[CoffeeOrder], payment: PaymentRequest) -> Payment:
    """The payment terminal: idempotent by the workflow's recorded transaction id."""
    return Payment(transaction_id=payment.transaction_id, amount_cents=payment.amount_cents)


@step(queue="barista")
def pour_coffee(ctx: StepContext[CoffeeOrder], cup: Cup) -> Cup:
    return cup.model_copy(update={"coffee": True})


@step(queue="barista")
def pour_milk(ctx: StepContext[CoffeeOrder], cup: Cup) -> Cup:
    return cup.model_copy(update={"milk": True})


@step(queue="barista")
def serve(ctx: StepContext[CoffeeOrder], cup: Cup) -> Cup:
    if not (cup.coffee and cup.milk):
        raise ValueError(f"refusing to serve an unfinished {cup.drink}")
    return cup


async def take_order(wf: WorkflowContext, order: CoffeeOrder) -> Payment:
    transaction_id = str(wf.uuid())  # recorded: a replay pays with the same id
    return await wf.step(pay, PaymentRequest(transaction_id=transaction_id,
                                             amount_cents=order.price_cents))


async def make_coffee(wf: WorkflowContext, order: CoffeeOrder) -> Cup:
    cup = Cup(drink=order.drink)
    coffee, milk = await wf.all(wf.step(pour_coffee, cup), wf.step(pour_milk, cup))
    return Cup(drink=order.drink, coffee=coffee.coffee, milk=milk.milk)


@workflow("Barista", queue="barista", request=CoffeeOrder, response=Served)
async def perform_duties(wf: WorkflowContext, order: CoffeeOrder) -> Served:
    payment = await take_order(wf, order)
    cup = await make_coffee(wf, order)
    await wf.step(serve, cup)
    return Served(customer=order.customer, drink=order.drink,
                  transaction_id=payment.transaction_id)
