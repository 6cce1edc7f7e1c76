"""Task types of the operator-repair e2e test (tests/e2e/test_operator_repair.py).

``RepairChain``: Reserve -> Charge -> Ship. Charge's compensation fails for good when the
request says so, and Ship fails when asked: CompensationFailed at Charge, for an operator.
``RepairStuck``: one step on a queue of its own, whose worker the test starts late; each run
appends a line to the request's ``runs`` file, so the test counts executions.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from tasksaga.core import RetryPolicy, StepContext, TaskDefinition

STUCK_QUEUE = "repair-stuck-e2e"


class ChainRequest(BaseModel):
    fail_ship: bool = False
    charge_undo_fails: bool = False


class Done(BaseModel):
    step: str


no_retry = RetryPolicy(max_retries=0)
repair_chain = TaskDefinition("RepairChain", queue="repair-e2e", request=ChainRequest,
                              max_retries=0, step_timeout_seconds=60)


@repair_chain.step("Reserve", order=1, retry=no_retry)
def reserve(ctx: StepContext[ChainRequest]) -> Done:
    return Done(step="Reserve")


@repair_chain.compensation("Reserve")
def release(ctx: StepContext[ChainRequest], data: Done) -> None:
    return None


@repair_chain.step("Charge", order=2, retry=no_retry)
def charge(ctx: StepContext[ChainRequest]) -> Done:
    return Done(step="Charge")


@repair_chain.compensation("Charge")
def refund(ctx: StepContext[ChainRequest], data: Done) -> None:
    if ctx.request.charge_undo_fails:
        raise ConnectionError("payment provider refuses the refund")


repair_chain.compensation_retry_policy("Charge", no_retry)


@repair_chain.step("Ship", order=3, retry=no_retry)
def ship(ctx: StepContext[ChainRequest]) -> Done:
    if ctx.request.fail_ship:
        raise ValueError("no carrier for this address")
    return Done(step="Ship")


class StuckRequest(BaseModel):
    runs: str  # a file path: each run of Hold appends a line


repair_stuck = TaskDefinition("RepairStuck", queue=STUCK_QUEUE, request=StuckRequest,
                              step_timeout_seconds=300)


@repair_stuck.step("Hold", order=1)
def hold(ctx: StepContext[StuckRequest]) -> Done:
    with Path(ctx.request.runs).open("a") as runs:
        runs.write(f"{ctx.attempt}\n")
    return Done(step="Hold")
