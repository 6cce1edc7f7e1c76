"""A task whose second step requires a capability (gpu) the default e2e worker lacks."""

from __future__ import annotations

from pydantic import BaseModel

from tasksaga.core.context import SagaContext, StepContext
from tasksaga.core.definition import TaskDefinition


class RenderRequest(BaseModel):
    scene: str


class Rendered(BaseModel):
    scene: str


class RenderResponse(BaseModel):
    scene: str


gpu_render = TaskDefinition("GpuRenderE2E", queue="render", request=RenderRequest,
                            response=RenderResponse)


@gpu_render.step("Prepare", order=1)
def prepare(ctx: StepContext[RenderRequest]) -> Rendered:
    return Rendered(scene=ctx.request.scene)


@gpu_render.step("Render", order=2, requires={"gpu"})
def render(ctx: StepContext[RenderRequest]) -> Rendered:
    return Rendered(scene=ctx.request.scene.upper())


@gpu_render.response_builder
def response(ctx: SagaContext[RenderRequest]) -> RenderResponse:
    return RenderResponse(scene=ctx.data_of("Render", Rendered).scene)
