"""The DSL saga ``AwaitChild`` (tests/e2e/workflow_tasks.py) starts as a child with
``wf.child``: deployed beside it (``TASKSAGA_TASK_MODULES=tests.e2e.workflow_tasks,
tests.e2e.workflow_child_tasks``). Each step run writes a ledger row under the child's id;
``Pack`` takes the request's ``step_ms`` (stopping when told to), so a kill lands while the
child runs."""

from __future__ import annotations

from typing import Any

from tasksaga.core import SagaContext, StepContext, TaskDefinition
from tests.e2e.workflow_tasks import QUEUE, ChildDone, Run, _ledger, _pause

ledger_child = TaskDefinition("WfE2eChild", queue=QUEUE, request=Run, response=ChildDone,
                              step_timeout_seconds=60)


@ledger_child.step("Pack", order=1, data=ChildDone)
def pack(ctx: StepContext[Run]) -> ChildDone:
    _ledger(ctx)
    _pause(ctx, ctx.request.step_ms)
    return ChildDone(steps=["Pack"])


@ledger_child.compensation("Pack")
def unpack(ctx: StepContext[Run], data: Any) -> None:
    _ledger(ctx)


@ledger_child.step("Seal", order=2, data=ChildDone)
def seal(ctx: StepContext[Run]) -> ChildDone:
    _ledger(ctx)
    return ChildDone(steps=["Pack", "Seal"])


@ledger_child.response_builder
def done(ctx: SagaContext[Run]) -> ChildDone:
    return ctx.data_of("Seal", ChildDone)
