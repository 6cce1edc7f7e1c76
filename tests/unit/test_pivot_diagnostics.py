"""tasksaga-check on pivot steps: TS127 (compensation on or after the pivot), TS128 (pivot in
a parallel stage), TS129 (a second pivot)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from tasksaga.check import check_modules
from tasksaga.core import TaskDefinition
from tasksaga.core.definition import DefinitionError
from tasksaga.core.diagnostics import diagnose
from tasksaga.core.registry import TaskRegistry


class Req(BaseModel):
    note: str = ""


def handler(ctx: Any) -> None:
    return None


def undo(ctx: Any, data: Any) -> None:
    return None


def shipping(*, pivot_order: int = 2) -> TaskDefinition:
    task = TaskDefinition("Ship", queue="q", request=Req)
    task.step("Charge", order=1)(handler)
    task.compensation("Charge")(undo)
    task.step("Ship", order=pivot_order, pivot=True)(handler)
    task.step("Notify", order=3)(handler)
    return task


def codes(task: TaskDefinition) -> list[str]:
    return [d.code for d in diagnose(task)]


def test_a_pivot_with_compensations_only_before_it_is_valid() -> None:
    assert codes(shipping()) == []
    assert [s.name for s in shipping().pivots()] == ["Ship"]


def test_a_compensation_after_the_pivot_is_refused() -> None:
    task = shipping()
    task.compensation("Notify")(undo)
    [found] = diagnose(task)
    assert found.code == "TS127"
    assert "'Notify'" in found.message and "after the pivot 'Ship'" in found.message
    with pytest.raises(DefinitionError, match="TS127"):
        TaskRegistry().register(task)


def test_a_compensation_on_the_pivot_itself_is_refused() -> None:
    task = shipping()
    task.compensation("Ship")(undo)
    [found] = diagnose(task)
    assert found.code == "TS127" and "is the pivot" in found.message


def test_a_pivot_in_a_parallel_group_is_refused() -> None:
    task = TaskDefinition("Ship", queue="q", request=Req)
    task.group("Out", order=1)
    task.step("Ship", order=1, group="Out", pivot=True)(handler)
    task.step("Label", order=1, group="Out")(handler)
    [found] = diagnose(task)
    assert found.code == "TS128" and "group 'Out'" in found.message
    assert "['Label']" in found.message


def test_a_pivot_sharing_its_order_with_another_step_is_refused() -> None:
    task = shipping()
    task.step("Label", order=2)(handler)
    assert codes(task) == ["TS128"]


def test_a_second_pivot_is_refused() -> None:
    task = shipping()
    task.step("Deliver", order=4, pivot=True)(handler)
    [found] = diagnose(task)
    assert found.code == "TS129" and "'Deliver'" in found.message and "'Ship'" in found.message


def test_tasksaga_check_reports_every_pivot_mistake_and_passes_the_order_example() -> None:
    out: list[str] = []
    assert check_modules(["tests.unit.fixtures.broken_pivots"], out) == 1
    assert sorted(line.split(": ")[1].split()[0] for line in out) == ["TS127", "TS128", "TS129"]
    out = []
    assert check_modules(["tasksaga_examples.order_fulfilment"], out) == 0
    assert out == ["tasksaga_examples.order_fulfilment:FulfilOrder: ok (6 steps)"]
