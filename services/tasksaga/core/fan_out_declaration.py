"""``task.for_each(...)``: declaring a dynamic fan-out step (docs/dsl.md, "Dynamic fan-out").

A mixin of ``TaskDefinition``, so the declaration API stays one object while the definition
module stays small.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel

from tasksaga.core.annotations import returned_list_model, returned_model
from tasksaga.core.fan_out_matrix import MatrixAxes, MatrixFunction, matrix_items
from tasksaga.core.fan_out_shape import ForEach, ItemsFunction
from tasksaga.core.retry import RetryPolicy
from tasksaga.core.steps import AwaitMode, StepCondition, StepDef, StepHandler


class ForEachDeclaration:
    """Adds ``for_each`` to a definition that has ``_add(StepDef)``."""

    _add: Callable[[StepDef], StepDef]  # TaskDefinition's

    def for_each(
        self,
        name: str,
        *,
        order: int,
        items: ItemsFunction | None = None,
        matrix: MatrixAxes | MatrixFunction | None = None,
        max_parallel: int | None = None,
        mode: AwaitMode = AwaitMode.ALL,
        quorum: int | float | None = None,
        item: type[BaseModel] | None = None,
        queue: str | None = None,
        data: type[BaseModel] | None = None,
        retry: RetryPolicy | None = None,
        compensation_retry: RetryPolicy | None = None,
        timeout_seconds: float | None = None,
        heartbeat_timeout_seconds: float | None = None,
        condition: StepCondition | None = None,
        reads: Iterable[str] | None = None,
        produces: Iterable[str] = (),
        consumes: Iterable[str] = (),
        requires: Iterable[str] | str = (),
    ) -> Callable[[StepHandler], StepHandler]:
        """Declare a worker step that runs once per item of ``items(ctx)`` (evaluated by the
        orchestrator when the step is reached). The handler gets its item as ``ctx.item``
        (and ``ctx.item_index``); later steps read the results, in item order, with
        ``ctx.results_of(name, Model)``. ``mode``: ALL (every instance), ANY (the first
        success) or QUORUM (``quorum=`` successes, a count or a fraction of the items);
        ``max_parallel`` bounds the instances in flight, the others wait in item order.
        ``matrix=`` instead of ``items=``: one instance per cell of the cross product of named
        axes (``{"height": [720, 1080], "codec": ["h264", "av1"]}``, or a function of the
        SagaContext returning such a mapping); ``ctx.item`` is the cell, a dict.
        ``produces``/``consumes``: artifacts, as for a step; each instance publishes its own,
        recorded for consumers as ``name[index]`` (docs/dsl.md, "Artifacts"). ``requires``: the
        capabilities every instance's worker must have (docs/dsl.md, "Capabilities")."""

        def register(handler: StepHandler) -> StepHandler:
            # Both or neither given: TS209 says so when the definition is checked; the step's
            # items then fail it when it expands rather than guess which was meant.
            if matrix is not None and items is None:
                cells: ItemsFunction = matrix_items(matrix)
            elif items is not None and matrix is None:
                cells = items
            else:
                cells = items_not_chosen
            spec = ForEach(items=cells, mode=mode, quorum=quorum, max_parallel=max_parallel,
                           item_type=item or (returned_list_model(items) if items else None),
                           matrix=matrix)
            self._add(StepDef(
                name=name, order=order, queue=queue, data_type=data or returned_model(handler),
                retry=retry, compensation_retry=compensation_retry,
                timeout_seconds=timeout_seconds,
                heartbeat_timeout_seconds=heartbeat_timeout_seconds, condition=condition,
                handler=handler, reads=None if reads is None else tuple(reads),
                for_each=spec, produces=tuple(produces), consumes=tuple(consumes),
                requires=frozenset([requires] if isinstance(requires, str) else requires),
            ))
            return handler

        return register


def items_not_chosen(ctx: Any) -> Any:
    """The items of a for_each given both or neither of items= and matrix= (TS209)."""
    raise ValueError("for_each needs exactly one of items= and matrix= (TS209)")


def describe_for_each(spec: ForEach) -> dict[str, Any]:
    """What the fingerprint records of a fan-out (tasksaga.core.fingerprint)."""
    described = {"mode": str(spec.mode), "quorum": spec.quorum,
                 "max_parallel": spec.max_parallel}
    if spec.matrix is not None:  # only then: fingerprints of other fan-outs stay as they were
        described["matrix"] = (getattr(spec.matrix, "__qualname__", repr(spec.matrix))
                               if callable(spec.matrix) else repr(spec.matrix))
    return described
