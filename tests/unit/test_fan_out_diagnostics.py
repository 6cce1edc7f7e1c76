"""tasksaga-check's for_each diagnostics (TS160-TS166)."""

from __future__ import annotations

from typing import Any

import pytest

from tasksaga.core import AwaitMode, StepContext, TaskDefinition
from tasksaga.core.diagnostics import diagnose
from tests.unit.sagas import Data, Req


def items(ctx: Any) -> list[int]:
    return [1, 2]


def handler(ctx: StepContext[Req]) -> Data:
    return Data()


def codes(task: TaskDefinition) -> list[str]:
    return [d.code for d in diagnose(task)]


def with_for_each(**options: Any) -> TaskDefinition:
    task = TaskDefinition("Fan", queue="q", request=Req)
    task.for_each("Each", order=1, **{"items": items, **options})(handler)
    return task


def test_a_well_formed_for_each_has_no_diagnostics() -> None:
    assert codes(with_for_each(max_parallel=4, mode=AwaitMode.QUORUM, quorum=0.5)) == []


@pytest.mark.parametrize("max_parallel", [0, -1, 2.5, True])
def test_max_parallel_below_one_or_not_an_integer_is_ts160(max_parallel: Any) -> None:
    assert codes(with_for_each(max_parallel=max_parallel)) == ["TS160"]


def test_a_quorum_without_quorum_mode_or_quorum_mode_without_one_is_ts161() -> None:
    assert codes(with_for_each(quorum=2)) == ["TS161"]
    assert codes(with_for_each(mode=AwaitMode.QUORUM)) == ["TS161"]


@pytest.mark.parametrize("quorum", [0, -2, 0.0, 1.5])
def test_a_quorum_that_is_no_count_or_fraction_is_ts162(quorum: Any) -> None:
    assert codes(with_for_each(mode=AwaitMode.QUORUM, quorum=quorum)) == ["TS162"]


def test_an_items_callable_of_the_wrong_shape_is_ts163() -> None:
    assert codes(with_for_each(items=lambda: [1])) == ["TS163"]
    assert codes(with_for_each(items=[1, 2])) == ["TS163"]
    assert codes(with_for_each(item=dict)) == ["TS163"]


def test_a_for_each_sharing_its_order_is_ts164() -> None:
    task = with_for_each()
    task.step("Beside", order=1)(handler)
    assert "TS164" in codes(task)


def test_a_for_each_after_the_pivot_is_accepted_without_a_compensation() -> None:
    task = TaskDefinition("Fan", queue="q", request=Req)
    task.step("Ship", order=1, pivot=True)(handler)
    task.for_each("Each", order=2, items=items)(handler)
    assert codes(task) == []
    task.compensation("Each")(lambda ctx, data: None)
    assert codes(task) == ["TS127"]  # past the pivot nothing is compensated


def test_a_step_named_like_an_instance_is_ts166() -> None:
    task = TaskDefinition("Fan", queue="q", request=Req)
    task.step("Each[0]", order=1)(handler)
    assert codes(task) == ["TS166"]


def matrix_step(**options: Any) -> TaskDefinition:
    task = TaskDefinition("Fan", queue="q", request=Req)
    task.for_each("Transcode", order=1, **options)(handler)
    task.compensation("Transcode")(lambda ctx, data: None)
    return task


def test_a_well_formed_matrix_static_or_from_the_request_has_no_diagnostics() -> None:
    assert codes(matrix_step(matrix={"height": [720, 1080], "codec": ["h264", "av1"]})) == []
    assert codes(matrix_step(matrix=lambda ctx: {"height": [720]})) == []


@pytest.mark.parametrize(("matrix", "code"), [
    ({"height": []}, "TS205"),
    ({}, "TS205"),
    (lambda: {"height": [1]}, "TS205"),  # not a function of the SagaContext
    ({"codec": ["h264", "h264"]}, "TS206"),
    ({"height": [[720]]}, "TS207"),
    ({"a": list(range(200)), "b": list(range(200))}, "TS208"),
])
def test_a_matrix_that_cannot_expand_is_diagnosed(matrix: Any, code: str) -> None:
    assert codes(matrix_step(matrix=matrix)) == [code]


def test_a_for_each_with_both_items_and_matrix_or_neither_is_ts209() -> None:
    assert codes(matrix_step(matrix={"height": [720]}, items=items)) == ["TS209"]
    assert codes(matrix_step()) == ["TS209"]
