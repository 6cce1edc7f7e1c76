"""Matrix fan-outs: ``task.for_each(..., matrix={"height": [720, 1080], "codec": ["h264"]})``.

A matrix is the cross product of named axes. Each cell (a dict of one value per axis) is one
item of the for_each step, so a matrix step is an ordinary fan-out for every other rule. Cells
come in a fixed order, axes in declaration order and values in the order given, the last axis
varying fastest (``itertools.product``): instance ``i`` is always the same cell. A cell's label,
``height=720,codec=h264``, is unique within the matrix (the checks here make it so): the
status shows it beside the instance's index name. Pure: no I/O.

The same checks run twice: on a static matrix when the definition is checked (TS205-TS209,
tasksaga.core.diagnostics_fan_out), and on a matrix built from the request when the step
expands (a wrong one fails the step with ``FanOutItemsError``, as a wrong ``items`` does).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tasksaga.core.fan_out_shape import MAX_ITEMS

#: One axis value: a string, an integer, a finite float or a bool (JSON scalars; not None).
Scalar = str | int | float | bool
#: The axes of a matrix, in declaration order: name -> values, in order.
MatrixAxes = Mapping[str, Sequence[Scalar]]
#: ``matrix(ctx)``: axes taken from the request (or earlier steps' data) when the step expands.
MatrixFunction = Callable[[Any], MatrixAxes]

_AXIS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL_BREAKERS = frozenset(",=[]")

EMPTY_AXIS = "TS205"
DUPLICATE_VALUE = "TS206"
NOT_SCALAR = "TS207"
TOO_MANY_CELLS = "TS208"


class MatrixError(ValueError):
    """A matrix that cannot be expanded; ``code`` is its diagnostic (TS205-TS208)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


def matrix_problems(axes: object) -> list[MatrixError]:
    """Everything wrong with ``axes``, each with its code; [] for a matrix that expands."""
    if not isinstance(axes, Mapping):
        return [MatrixError(EMPTY_AXIS, f"a matrix is a mapping of axis name to a list of "
                                        f"values, got {type(axes).__name__}")]
    if not axes:
        return [MatrixError(EMPTY_AXIS, "the matrix has no axes: give at least one, "
                                        "e.g. {\"height\": [720, 1080]}")]
    found: list[MatrixError] = []
    for name, values in axes.items():
        found += _axis_problems(name, values)
    if not found:
        cells = math.prod(len(values) for values in axes.values())
        if cells > MAX_ITEMS:
            sizes = " x ".join(f"{len(v)} {n}" for n, v in axes.items())
            found.append(MatrixError(TOO_MANY_CELLS, (
                f"the matrix has {cells} cells ({sizes}), over the limit of {MAX_ITEMS} "
                "instances per for_each step: drop values, or split the work into steps")))
    return found


def _axis_problems(name: object, values: object) -> list[MatrixError]:
    if not isinstance(name, str) or not _AXIS_NAME.fullmatch(name):
        return [MatrixError(EMPTY_AXIS, f"axis name {name!r} is not an identifier (letters, "
                                        "digits, _): it names the axis in instance labels")]
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        return [MatrixError(EMPTY_AXIS, f"axis {name!r} must be a list of values, got "
                                        f"{type(values).__name__}")]
    if not values:
        return [MatrixError(EMPTY_AXIS, f"axis {name!r} has no values: an empty axis makes "
                                        "an empty matrix; give it a value or drop it")]
    found: list[MatrixError] = []
    seen: dict[str, int] = {}
    for position, value in enumerate(values):
        problem = _value_problem(value)
        if problem is not None:
            found.append(MatrixError(NOT_SCALAR, f"axis {name!r} value {position} ({value!r}) "
                                                 f"{problem}"))
            continue
        label = render_value(value)
        if label in seen:
            found.append(MatrixError(DUPLICATE_VALUE, (
                f"axis {name!r} has {value!r} twice (values {seen[label]} and {position} both "
                f"read {label}): two cells would be the same; drop one")))
        seen.setdefault(label, position)
    return found


def _value_problem(value: object) -> str | None:
    if isinstance(value, bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "is not a finite number"
    if isinstance(value, str):
        if not value or _LABEL_BREAKERS & set(value):
            return "is empty or has one of , = [ ]: it could not label a cell unambiguously"
        return None
    return ("is not a scalar: an axis value is a string, a number or a bool (put structured "
            "data in the request and name it with a key)")


def render_value(value: Scalar) -> str:
    """How a value reads in a cell label: strings as they are, other scalars as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def matrix_cells(axes: MatrixAxes) -> list[dict[str, Scalar]]:
    """The cells of ``axes`` in their fixed order; MatrixError (the first problem) if it
    cannot expand."""
    problems = matrix_problems(axes)
    if problems:
        raise problems[0]
    names = list(axes)
    return [dict(zip(names, values, strict=True))
            for values in itertools.product(*(axes[n] for n in names))]


def cell_label(cell: Mapping[str, Scalar]) -> str:
    """``height=720,codec=h264``: the cell, axes in declaration order."""
    return ",".join(f"{name}={render_value(value)}" for name, value in cell.items())


def static_cell_labels(matrix: object) -> list[str] | None:
    """The labels of a static matrix's cells, by instance index (what the status shows); None
    for a matrix from the request (its cells are known once the step expanded) or a wrong one."""
    if callable(matrix) or matrix_problems(matrix):
        return None
    assert isinstance(matrix, Mapping)
    return [cell_label(cell) for cell in matrix_cells(matrix)]


def matrix_items(matrix: MatrixAxes | MatrixFunction) -> Callable[[Any], list[dict[str, Scalar]]]:
    """The ``items(ctx)`` function of a matrix step: its cells."""
    if callable(matrix):
        axes_of = matrix

        def cells_from_request(ctx: Any) -> list[dict[str, Scalar]]:
            return matrix_cells(axes_of(ctx))

        cells_from_request.__qualname__ = getattr(matrix, "__qualname__", repr(matrix))
        return cells_from_request
    static = matrix

    def static_cells(ctx: Any) -> list[dict[str, Scalar]]:
        return matrix_cells(static)

    static_cells.__qualname__ = describe_axes(static)
    return static_cells


def describe_axes(axes: object) -> str:
    """``height(2) x codec(2)``, for messages and the fingerprint."""
    if not isinstance(axes, Mapping):
        return repr(axes)
    return " x ".join(f"{name}({len(values) if isinstance(values, Sequence) else '?'})"
                      for name, values in axes.items())
