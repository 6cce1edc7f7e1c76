"""The e2e fan-out task: a for_each over ``count`` numbers with a trivial handler, then a sum
of the results (read in item order)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tasksaga.core import SagaContext, StepContext, TaskDefinition


class CountRequest(BaseModel):
    count: int = Field(ge=0, le=5000)
    max_parallel: int | None = None


class Square(BaseModel):
    index: int
    square: int


class Total(BaseModel):
    count: int
    in_order: bool
    total: int


fan_out_e2e = TaskDefinition("FanOutE2E", queue="fan-out-e2e", request=CountRequest,
                             response=Total, step_timeout_seconds=120)


def numbers(ctx: SagaContext[CountRequest]) -> list[int]:
    return list(range(ctx.request.count))


@fan_out_e2e.for_each("SquareEach", order=1, items=numbers)
def square(ctx: StepContext[CountRequest]) -> Square:
    value: int = ctx.item
    assert value == ctx.item_index
    return Square(index=value, square=value * value)


@fan_out_e2e.step("Sum", order=2)
def total(ctx: StepContext[CountRequest]) -> Total:
    squares = ctx.results_of("SquareEach", Square)
    return Total(count=len(squares),
                 in_order=[s.index for s in squares] == list(range(len(squares))),
                 total=sum(s.square for s in squares))


@fan_out_e2e.response_builder
def response(ctx: SagaContext[CountRequest]) -> Total:
    return ctx.data(Total)


class RenditionRequest(BaseModel):
    video: str


class Rendition(BaseModel):
    key: str


class Renditions(BaseModel):
    keys: list[str]


#: A matrix fan-out: one instance per (height, codec) cell, in cell order.
matrix_e2e = TaskDefinition("MatrixE2E", queue="fan-out-e2e", request=RenditionRequest,
                            response=Renditions, step_timeout_seconds=60)


@matrix_e2e.for_each("Transcode", order=1,
                     matrix={"height": [720, 1080], "codec": ["h264", "av1"]})
def transcode(ctx: StepContext[RenditionRequest]) -> Rendition:
    cell = ctx.item
    return Rendition(key=f"{ctx.request.video}/{cell['height']}p.{cell['codec']}")


@matrix_e2e.response_builder
def renditions(ctx: SagaContext[RenditionRequest]) -> Renditions:
    return Renditions(keys=[r.key for r in ctx.results_of("Transcode", Rendition)])
