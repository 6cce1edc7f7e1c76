"""Versions of one task type for the version tests: what each version's handlers did is
recorded in ``RAN``, so a test can tell which version ran a step."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tasksaga.core import RetryPolicy, StepContext, TaskDefinition

RAN: list[str] = []


class Order(BaseModel):
    item: str = "book"


class Done(BaseModel):
    by: str


class Shipped(BaseModel):
    item: str


def billing(version: int, *, reserve_name: str = "Reserve", charge_retries: int = 0,
            extra_step: bool = False) -> TaskDefinition:
    """Reserve (compensated) -> Charge -> Ship; ``reserve_name`` renames the first step,
    ``charge_retries`` changes only a retry policy, ``extra_step`` adds a step at order 1."""
    task = TaskDefinition("Billing", queue="billing", request=Order, response=Shipped,
                          version=version)
    tag = f"v{version}"

    @task.step(reserve_name, order=1)
    def reserve(ctx: StepContext[Order]) -> Done:
        RAN.append(f"{tag}:{reserve_name}")
        return Done(by=tag)

    @task.compensation(reserve_name)
    def release(ctx: StepContext[Order], data: Done) -> None:
        RAN.append(f"{tag}:undo {reserve_name} (done by {data.by})")

    if extra_step:
        @task.step("Audit", order=1)
        def audit(ctx: StepContext[Order]) -> Done:
            return Done(by=tag)

    @task.step("Charge", order=2, retry=RetryPolicy(max_retries=charge_retries))
    def charge(ctx: StepContext[Order]) -> Done:
        RAN.append(f"{tag}:Charge")
        return Done(by=tag)

    @task.step("Ship", order=3)
    def ship(ctx: StepContext[Order]) -> Done:
        RAN.append(f"{tag}:Ship")
        return Done(by=tag)

    @task.response_builder
    def respond(ctx: Any) -> Shipped:
        return Shipped(item=ctx.request.item)

    return task
