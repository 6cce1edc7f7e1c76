"""Matrix fan-outs, pure: cells, their order and labels, and what is wrong with a matrix."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasksaga.core.fan_out_matrix import (
    MatrixError,
    cell_label,
    matrix_cells,
    matrix_items,
    matrix_problems,
)
from tasksaga.core.fan_out_shape import MAX_ITEMS

AXIS_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
VALUES = st.one_of(st.integers(-50, 50), st.booleans(),
                   st.text("abcxyz019_-.", min_size=1, max_size=4),
                   st.floats(allow_nan=False, allow_infinity=False, width=32))


def distinct_by_label(values: list[Any]) -> list[Any]:
    seen: dict[str, Any] = {}
    for value in values:
        seen.setdefault(cell_label({"a": value}), value)
    return list(seen.values())


AXES = st.dictionaries(
    AXIS_NAMES, st.lists(VALUES, min_size=1, max_size=4).map(distinct_by_label),
    min_size=1, max_size=4)


@given(AXES)
def test_a_matrix_has_one_cell_per_combination_in_a_fixed_order_with_unique_labels(
        axes: dict[str, list[Any]]) -> None:
    cells = matrix_cells(axes)
    assert len(cells) == math.prod(len(values) for values in axes.values())
    assert cells == matrix_cells(dict(axes))  # the same matrix, the same order
    assert all(list(cell) == list(axes) for cell in cells)  # axes in declaration order
    labels = [cell_label(cell) for cell in cells]
    assert len(set(labels)) == len(labels)
    # The last axis varies fastest; each axis runs through its values in the order given.
    last = list(axes)[-1]
    assert [cell[last] for cell in cells[:len(axes[last])]] == axes[last]
    first = next(iter(axes))
    assert cells[0][first] == axes[first][0] and cells[-1][first] == axes[first][-1]


def test_cells_of_a_two_by_two_matrix_and_their_labels() -> None:
    cells = matrix_cells({"height": [720, 1080], "codec": ["h264", "av1"]})
    assert cells == [{"height": 720, "codec": "h264"}, {"height": 720, "codec": "av1"},
                     {"height": 1080, "codec": "h264"}, {"height": 1080, "codec": "av1"}]
    assert [cell_label(c) for c in cells] == [
        "height=720,codec=h264", "height=720,codec=av1", "height=1080,codec=h264",
        "height=1080,codec=av1"]
    assert cell_label({"fast": True, "crf": 23.5, "tag": "x-1"}) == "fast=true,crf=23.5,tag=x-1"


@pytest.mark.parametrize(("axes", "code", "says"), [
    ({}, "TS205", "no axes"),
    ({"height": []}, "TS205", "axis 'height' has no values"),
    ({"height": "720"}, "TS205", "must be a list of values, got str"),
    ({"bad name": [1]}, "TS205", "is not an identifier"),
    ([("height", [1])], "TS205", "got list"),
    ({"codec": ["h264", "av1", "h264"]}, "TS206", "has 'h264' twice (values 0 and 2"),
    ({"height": [720, "720"]}, "TS206", "both read 720"),
    ({"height": [{"px": 720}]}, "TS207", "is not a scalar"),
    ({"height": [None]}, "TS207", "is not a scalar"),
    ({"height": [float("nan")]}, "TS207", "not a finite number"),
    ({"codec": ["h2,64"]}, "TS207", "could not label a cell"),
    ({"a": list(range(101)), "b": list(range(100))}, "TS208",
     f"10100 cells (101 a x 100 b), over the limit of {MAX_ITEMS}"),
])
def test_a_matrix_that_cannot_expand_says_what_is_wrong(axes: Any, code: str,
                                                        says: str) -> None:
    problems = matrix_problems(axes)
    assert [p.code for p in problems] == [code]
    assert says in problems[0].message
    with pytest.raises(MatrixError, match=code):
        matrix_cells(axes)


def test_a_matrix_from_the_request_is_checked_when_it_expands() -> None:
    cells = matrix_items(lambda ctx: {"height": ctx["heights"]})
    assert cells({"heights": [480, 720]}) == [{"height": 480}, {"height": 720}]
    with pytest.raises(MatrixError, match="axis 'height' has no values"):
        cells({"heights": []})
