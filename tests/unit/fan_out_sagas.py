"""for_each definitions for the fan-out unit tests; the item count is the request's width."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tasksaga.core import AwaitMode, RetryPolicy, SagaContext, StepContext, TaskDefinition
from tasksaga.core import messages as msg
from tests.unit.sagas import Data, Driver, Req


class Page(BaseModel):
    number: int


class Thumb(BaseModel):
    page: int


class Count(BaseModel):
    thumbs: int


def pages(ctx: SagaContext[Req]) -> list[Page]:
    return [Page(number=n) for n in range(ctx.request.width)]


def thumbnail(ctx: StepContext[Req]) -> Thumb:
    page = ctx.item
    assert isinstance(page, Page)
    return Thumb(page=page.number)


def delete_thumbnail(ctx: StepContext[Req], data: Any) -> None:
    return None


def fan_out(mode: AwaitMode = AwaitMode.ALL, *, max_parallel: int | None = None,
            quorum: int | float | None = None, retry: RetryPolicy | None = None,
            items: Any = pages, pivot: bool = False) -> TaskDefinition:
    """Prepare (compensated; or the pivot) -> Each (a for_each over the pages) -> Publish."""
    task = TaskDefinition("Thumbnails", queue="pages", request=Req, step_timeout_seconds=30)
    task.step("Prepare", order=1, data=Data, pivot=pivot)(lambda ctx: Data(value="prepared"))
    task.for_each("Each", order=2, items=items, max_parallel=max_parallel, mode=mode,
                  quorum=quorum, retry=retry)(thumbnail)
    if not pivot:  # past the pivot nothing is compensated (TS127)
        task.compensation("Prepare")(delete_thumbnail)
        task.compensation("Each")(delete_thumbnail)

    @task.step("Publish", order=3)
    def publish(ctx: StepContext[Req]) -> Count:
        return Count(thumbs=len(ctx.results_of("Each", Thumb)))

    return task


def instance_result(driver: Driver, name: str) -> msg.StepSucceeded:
    """What a worker answers for instance ``name``: its page number, from its item."""
    command = next(c for c in reversed(driver.commands)
                   if isinstance(c, msg.ExecuteStep) and c.step == name)
    assert command.item_json is not None
    page = Page.model_validate_json(command.item_json)
    record = driver.state.step(name)
    return msg.StepSucceeded(driver.state.task_id, name, record.attempt,
                             Thumb(page=page.number).model_dump_json(), record.fencing_token)
