"""Stand-in handlers for recording a step graph whose real handlers need servers the
in-memory ports cannot serve (the video example's ffmpeg on presigned URLs)."""

from __future__ import annotations

import copy
import dataclasses
import typing

from pydantic import BaseModel

from tasksaga.core.context import StepContext
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.fingerprint import fingerprint
from tasksaga.core.steps import StepDef, StepHandler
from tasksaga_examples.video_pipeline import video_transcode


def sample(model: type[BaseModel]) -> BaseModel:
    """A valid instance of ``model`` with placeholder values (defaults where it has them)."""
    values: dict[str, object] = {}
    for name, field in model.model_fields.items():
        if not field.is_required():
            continue
        values[name] = _placeholder(field.annotation)
    return model.model_validate(values)


def _placeholder(annotation: object) -> object:
    options = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, set):
        return []
    if origin is dict:
        return {}
    if options and origin is not None:
        return _placeholder(options[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return sample(annotation).model_dump()
    return {str: "placeholder", int: 1, float: 1.0, bool: False}.get(annotation, "placeholder")  # type: ignore[call-overload]


def graph_only(definition: TaskDefinition) -> TaskDefinition:
    """The definition's step graph with stand-in handlers that return empty data: for an
    example whose handlers cannot run in process (the video pipeline runs ffmpeg on presigned
    URLs). Handlers are not part of what decide() reads, and the fingerprint proves the graph
    is the example's own."""
    clone = copy.copy(definition)

    def stand_in(step: StepDef) -> StepHandler:
        def run(ctx: StepContext[BaseModel]) -> BaseModel | None:
            return sample(step.data_type) if step.data_type else None
        return run

    def undo(ctx: StepContext[BaseModel], data: object) -> None:
        return None

    clone._steps = {
        step.name: dataclasses.replace(
            step, handler=stand_in(step) if step.handler else None,
            compensation=undo if step.compensation else None)
        for step in definition.steps}
    response = definition.response_type
    clone.build_response = (lambda ctx: sample(response)) if response else None
    assert fingerprint(clone) == fingerprint(definition)
    return clone


video_graph = graph_only(video_transcode)
