"""tasksaga-check's diagnostics of child steps and depends_on (TS150-TS159)."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from tasksaga import check
from tasksaga.core import SagaContext, TaskDefinition
from tasksaga.core.definition import DefinitionError
from tasksaga.core.diagnostics import diagnose
from tasksaga.core.diagnostics_children import task_links
from tasksaga.core.registry import load_registry
from tests.unit.child_sagas import ChildReq, ChildResp, child_task, parent_task
from tests.unit.sagas import Data, Req


def codes(definition: TaskDefinition) -> list[str]:
    # TS122 (several steps share a data type) holds for every fixture here by design.
    return [d.code for d in diagnose(definition) if d.code != "TS122"]


def link_codes(*definitions: TaskDefinition) -> list[tuple[str, str]]:
    return [(name, d.code) for name, d in task_links(definitions)]


def test_a_valid_parent_child_pair_has_no_diagnostics() -> None:
    child = child_task()
    parent = parent_task(child)
    assert codes(parent) == [] and codes(child) == []
    assert link_codes(parent, child) == []


def test_ts150_a_child_type_not_deployed_with_the_parent() -> None:
    parent = parent_task(child_task())
    [(name, diagnostic)] = task_links([parent])
    assert (name, diagnostic.code) == ("Trip", "TS150")
    assert "'Room'" in diagnostic.message


def two_arguments(ctx: SagaContext[Req], extra: int) -> ChildReq:
    return ChildReq(seat="", width=extra)


def wrong_model(ctx: SagaContext[Req]) -> Req:
    return Req()


@pytest.mark.parametrize("builder", [two_arguments, wrong_model, "not callable"],
                         ids=["two arguments", "returns another model", "not a function"])
def test_ts151_a_request_builder_of_the_wrong_signature(builder: Any) -> None:
    assert "TS151" in codes(parent_task(child_task(), request=builder))


def test_ts151_is_checked_against_a_child_named_by_string_once_it_is_known() -> None:
    child = child_task()
    parent = TaskDefinition("Trip", queue="q", request=Req)
    parent.step("Hold", order=1, data=Data)(lambda ctx: Data())
    parent.child_step("Room", order=2, task="Room", request=wrong_model)
    assert codes(parent) == []  # the child's request model is not known here
    assert link_codes(parent, child) == [("Trip", "TS151")]


def test_ts152_depends_on_cycles_direct_and_through_others() -> None:
    loop = TaskDefinition("Loop", queue="q", request=Req, depends_on="Loop")
    loop.step("S", order=1, data=Data)(lambda ctx: Data())
    assert "TS152" in codes(loop)
    a = TaskDefinition("A", queue="q", request=Req, response=Req, depends_on="B")
    b = TaskDefinition("B", queue="q", request=Req, response=Req, depends_on="A")
    for task in (a, b):
        task.step("S", order=1, data=Data)(lambda ctx: Data())
        task.response_builder(lambda ctx: Req())
    cycles = [d for _, d in task_links([a, b]) if d.code == "TS152"]
    assert len(cycles) == 1 and "A -> B -> A" in cycles[0].message


def test_ts153_a_downstream_request_the_upstream_response_cannot_fill() -> None:
    child = child_task()  # responds ChildResp(room: str)
    needs_seat = TaskDefinition("Invoice", queue="q", request=ChildReq, depends_on=child)
    needs_seat.step("S", order=1, data=Data)(lambda ctx: Data())
    [(name, diagnostic)] = task_links([child, needs_seat])
    assert (name, diagnostic.code) == ("Invoice", "TS153")
    assert "'seat' is missing" in diagnostic.message
    fits = TaskDefinition("Invoice", queue="q", request=ChildResp, depends_on=child)
    fits.step("S", order=1, data=Data)(lambda ctx: Data())
    assert link_codes(child, fits) == []


def test_ts154_depends_on_an_unknown_type() -> None:
    orphan = TaskDefinition("Invoice", queue="q", request=Req, depends_on="Nowhere")
    orphan.step("S", order=1, data=Data)(lambda ctx: Data())
    assert link_codes(orphan) == [("Invoice", "TS154")]


def test_ts155_a_compensation_or_retry_on_a_child_step() -> None:
    parent = parent_task(child_task())
    parent.compensation("Room")(lambda ctx, data: None)
    assert "TS155" in codes(parent)


def test_ts156_a_child_step_of_the_tasks_own_type() -> None:
    task = TaskDefinition("Trip", queue="q", request=Req)
    task.child_step("Again", order=1, task="Trip", request=lambda ctx: Req())
    assert "TS156" in codes(task)


def test_ts157_warns_of_a_child_that_cannot_be_cancelled() -> None:
    child = child_task(cancellable=False)
    [(name, diagnostic)] = task_links([parent_task(child), child])
    assert (name, diagnostic.code, diagnostic.severity) == ("Trip", "TS157", "warning")


def test_ts158_a_child_with_api_steps() -> None:
    child = child_task()
    child.upload_step("Upload", order=0, bucket="b", source="seat")
    parent = parent_task(child)
    assert ("Trip", "TS158") in link_codes(parent, child)


def test_ts159_warns_of_children_that_start_each_other() -> None:
    ping = TaskDefinition("Ping", queue="q", request=Req)
    pong = TaskDefinition("Pong", queue="q", request=Req)
    ping.child_step("ToPong", order=1, task="Pong", request=lambda ctx: Req())
    pong.child_step("ToPing", order=1, task="Ping", request=lambda ctx: Req())
    found = task_links([ping, pong])
    assert {(n, d.code, d.severity) for n, d in found} == {("Ping", "TS159", "warning"),
                                                          ("Pong", "TS159", "warning")}


def test_services_refuse_to_load_a_child_step_whose_type_is_not_deployed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("lonely_parent")
    module.parent = parent_task(child_task())  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lonely_parent", module)
    with pytest.raises(DefinitionError, match="TS150"):
        load_registry(["lonely_parent"])


def test_tasksaga_check_reports_links_across_the_modules_it_is_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("lonely_parent")
    module.parent = parent_task(child_task())  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lonely_parent", module)
    out: list[str] = []
    assert check.check_modules(["lonely_parent"], out) == 1
    assert any(line.startswith("lonely_parent:Trip: TS150 error") for line in out)
    out.clear()
    assert check.check_modules(["tasksaga_examples.trip_booking"], out) == 0, out
