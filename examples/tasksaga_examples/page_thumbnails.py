"""Thumbnail each page of a document: a dynamic fan-out (``task.for_each``).

SplitPages stores one object per page of the request's document (a text with pages
separated by form feeds, ``\\f``) -> **ThumbnailEach** runs once per page, at most
``MAX_PARALLEL`` at a time, each instance writing the page's "thumbnail" (its first line,
upper-cased) -> BuildIndex reads every thumbnail, in page order, and writes an index.

Each instance has its own attempts, retries, heartbeats and compensation (deleting its
thumbnail). ``fail_page`` (a page number) makes that page's instance fail for good: the
other instances still running are told to stop, the thumbnails already written are deleted
in reverse page order, then the pages, and the task ends Failed.

Objects go to the ``page-thumbnails`` bucket under the task id. Enable it with
``TASKSAGA_TASK_MODULES=...,tasksaga_examples.page_thumbnails`` (queue ``pages``).
"""

from __future__ import annotations

import io
import json

from pydantic import BaseModel, Field

from tasksaga.core import (
    NonRetryableError,
    RetryPolicy,
    SagaContext,
    StepContext,
    TaskDefinition,
)

BUCKET = "page-thumbnails"
MAX_PARALLEL = 8


class ThumbnailRequest(BaseModel):
    document: str = Field(min_length=1, max_length=1_000_000)
    fail_page: int | None = None  # that page's thumbnail fails for good (a demo switch)


class PageRef(BaseModel):
    number: int
    key: str


class Pages(BaseModel):
    pages: list[PageRef]


class Thumbnail(BaseModel):
    page: int
    key: str
    size: int


class Index(BaseModel):
    key: str
    thumbnails: int


class ThumbnailResponse(BaseModel):
    index_key: str
    thumbnails: list[str]


page_thumbnails = TaskDefinition(
    "PageThumbnails", queue="pages", request=ThumbnailRequest, response=ThumbnailResponse,
    retry=RetryPolicy(max_retries=2, delay_ms=200), timeout_seconds=900,
    step_timeout_seconds=120)


def _put(ctx: StepContext[ThumbnailRequest], key: str, body: bytes, kind: str) -> int:
    return ctx.store.put_stream(BUCKET, key, io.BytesIO(body), kind)


@page_thumbnails.step("SplitPages", order=1)
def split_pages(ctx: StepContext[ThumbnailRequest]) -> Pages:
    pages = []
    for number, text in enumerate(ctx.request.document.split("\f")):
        key = f"{ctx.task_id}/pages/{number:05d}.txt"
        _put(ctx, key, text.encode(), "text/plain")  # the same key on every attempt
        pages.append(PageRef(number=number, key=key))
    return Pages(pages=pages)


@page_thumbnails.compensation("SplitPages")
def delete_pages(ctx: StepContext[ThumbnailRequest], data: Pages) -> None:
    for page in data.pages:
        ctx.store.delete(BUCKET, page.key)


def each_page(ctx: SagaContext[ThumbnailRequest]) -> list[PageRef]:
    return ctx.data(Pages).pages


@page_thumbnails.for_each("ThumbnailEach", order=2, items=each_page, max_parallel=MAX_PARALLEL,
                          reads=["SplitPages"])
def thumbnail(ctx: StepContext[ThumbnailRequest]) -> Thumbnail:
    page: PageRef = ctx.item
    if page.number == ctx.request.fail_page:
        raise NonRetryableError(f"page {page.number} cannot be rendered (fail_page)")
    text = b"".join(ctx.store.open_stream(BUCKET, page.key)).decode()
    ctx.heartbeat(0.5, f"page {page.number} read")
    first_line = (text.strip().splitlines() or [""])[0][:80].upper()
    key = f"{ctx.task_id}/thumbs/{page.number:05d}.txt"
    size = _put(ctx, key, first_line.encode(), "text/plain")
    return Thumbnail(page=page.number, key=key, size=size)


@page_thumbnails.compensation("ThumbnailEach")
def delete_thumbnail(ctx: StepContext[ThumbnailRequest], data: Thumbnail) -> None:
    ctx.store.delete(BUCKET, data.key)


@page_thumbnails.step("BuildIndex", order=3, reads=["ThumbnailEach"])
def build_index(ctx: StepContext[ThumbnailRequest]) -> Index:
    thumbnails = ctx.results_of("ThumbnailEach", Thumbnail)  # in page order
    key = f"{ctx.task_id}/index.json"
    _put(ctx, key, json.dumps([t.key for t in thumbnails]).encode(), "application/json")
    return Index(key=key, thumbnails=len(thumbnails))


@page_thumbnails.compensation("BuildIndex")
def delete_index(ctx: StepContext[ThumbnailRequest], data: Index) -> None:
    ctx.store.delete(BUCKET, data.key)


@page_thumbnails.response_builder
def response(ctx: SagaContext[ThumbnailRequest]) -> ThumbnailResponse:
    return ThumbnailResponse(index_key=ctx.data(Index).key,
                             thumbnails=[t.key for t in ctx.results_of("ThumbnailEach",
                                                                       Thumbnail)])
