"""TS180-TS189: what a workflow body's source shows that would break replay."""

from __future__ import annotations

import random
import time
import uuid
from datetime import datetime

import pytest

from tasksaga.core.definition import DefinitionError
from tasksaga.core.diagnostics import diagnose
from tasksaga.core.registry import TaskRegistry
from tasksaga.workflow import WorkflowContext, workflow
from tasksaga_examples.order_workflow import place_order
from tests.unit.workflow_samples import Req, double, not_async_flow, switch_flow


def codes(definition: object) -> list[str]:
    return [d.code for d in diagnose(definition)]  # type: ignore[arg-type]


def plain_function(ctx: object, value: object) -> None:
    return None


@workflow("WfImpure", queue="wf", request=Req)
async def impure_flow(wf: WorkflowContext, req: Req) -> None:
    started = time.time()
    today = datetime.now()
    pick = random.random()
    ident = uuid.uuid4()
    await wf.signal("undeclared")
    await wf.step(plain_function, req)  # type: ignore[arg-type]
    await wf.step(double, req)
    try:
        print(started, today, pick, ident)
    except:  # noqa: E722 - the bare except TS188 warns about
        started = 0.0


def test_clocks_randomness_ids_io_undeclared_signals_and_plain_functions_are_reported() -> None:
    found = diagnose(impure_flow)
    assert sorted(d.code for d in found) == ["TS181", "TS181", "TS182", "TS183", "TS184",
                                             "TS185", "TS186", "TS188"]
    messages = "\n".join(str(d) for d in found)
    assert "time.time() reads a clock" in messages and "use wf.now()" in messages
    assert "wf.signal('undeclared') is not declared" in messages
    assert "plain_function is not one" in messages
    assert {d.code for d in found if d.severity == "warning"} == {"TS188"}


def test_a_body_that_is_not_async_is_refused_at_registration() -> None:
    with pytest.raises(DefinitionError, match="TS180"):
        TaskRegistry([not_async_flow])


def test_clean_workflows_have_no_diagnostics() -> None:
    assert codes(switch_flow) == [] and codes(place_order) == []
