"""The video pipeline (seed 001): upload once, transcode in parallel, compensate only what
succeeded.

    UploadVideo (API) -> ExtractMetadata -> [Transcode720p | Transcode1080p | Transcode4K if the
    source is 4K] -> GenerateThumbnails -> UpdateCatalog -> NotifyWebhook

The failure switch (documented in docs/dsl.md): ``fail_step`` names a step that raises a
retryable error on its first ``fail_times`` attempts; ``fail_compensation_of`` names a step
whose compensation always fails. Each rendition is an artifact (``rendition_720p``, ...):
content-addressed, checksummed parts in bucket ``artifacts``, released when its step is
compensated. ``TASKSAGA_VIDEO_RETRY_DELAY_MS`` (default 2000, the seed's
value) and ``TASKSAGA_VIDEO_HEARTBEAT_TIMEOUT_S`` (default 15) tune the example for tests.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import IO

from pydantic import BaseModel, Field

from tasksaga.adapters.url_guard import UnresolvedHost, UnsafeUrl, UrlGuard
from tasksaga.core import (
    Backoff,
    CallbackUrl,
    NonRetryableError,
    RetryPolicy,
    SagaContext,
    StepContext,
    TaskDefinition,
    UploadedFile,
)
from tasksaga.core.artifacts import BUCKET as ARTIFACT_BUCKET
from tasksaga.core.artifacts import ArtifactRef
from tasksaga.core.definition import AwaitMode
from tasksaga.notifier.pinned_http import PinnedPoster
from tasksaga_examples.video import catalog, media

OUTPUT_BUCKET = "transcoded-videos"
RETRY_DELAY_MS = int(os.environ.get("TASKSAGA_VIDEO_RETRY_DELAY_MS", "2000"))
HEARTBEAT_TIMEOUT_S = float(os.environ.get("TASKSAGA_VIDEO_HEARTBEAT_TIMEOUT_S", "15"))
# TASKSAGA_URL_ALLOWLIST (CIDRs, host names) lets local receivers through, as in the notifier.
_WEBHOOK_GUARD = UrlGuard(os.environ.get("TASKSAGA_URL_ALLOWLIST", "").split(","))
_WEBHOOK_POSTER = PinnedPoster(deadline_s=10.0)
RESOLUTIONS = {"Transcode720p": ("720p", 720), "Transcode1080p": ("1080p", 1080),
               "Transcode4K": ("4K", 2160)}


def rendition_artifact(resolution: str) -> str:
    """The artifact a transcode step publishes: ``rendition_720p``, ``rendition_1080p``, ..."""
    return f"rendition_{resolution}"


class VideoRequest(BaseModel):
    video_file: UploadedFile
    title: str = Field(min_length=1, max_length=200)
    callback_url: CallbackUrl | None = None  # vetted by the API's SSRF guard at submit
    fail_step: str | None = None
    fail_times: int = Field(default=0, ge=0)
    fail_compensation_of: str | None = None


class MetadataData(BaseModel):
    width: int
    height: int
    duration_s: float
    codec: str
    frame_rate: str


class TranscodeData(BaseModel):
    """A rendition: its artifact's SHA-256, size and part objects in ``bucket`` (in order:
    their concatenation is the MP4)."""

    resolution: str
    sha256: str
    size: int
    bucket: str
    parts: list[str]

    @classmethod
    def of(cls, resolution: str, ref: ArtifactRef) -> TranscodeData:
        return cls(resolution=resolution, sha256=ref.sha256, size=ref.size,
                   bucket=ARTIFACT_BUCKET,
                   parts=[ref.part_key(index) for index in range(ref.parts)])


class ThumbnailsData(BaseModel):
    bucket: str
    keys: list[str]


class CatalogData(BaseModel):
    entry_id: str


class NotifyData(BaseModel):
    delivered: bool
    status_code: int | None = None


class VideoResponse(BaseModel):
    renditions: dict[str, TranscodeData]  # by resolution; skipped resolutions are absent
    thumbnail_keys: list[str]
    catalog_entry_id: str


class SimulatedFailure(RuntimeError):
    """Raised by the failure switch; retryable like a real transient fault."""


video_transcode = TaskDefinition(
    "VideoTranscode",
    queue="video-processing",
    request=VideoRequest,
    response=VideoResponse,
    max_retries=1,
    timeout_seconds=3600,
    cancellable=True,
    step_timeout_seconds=600,
)

transcode_retry = RetryPolicy(max_retries=5, backoff=Backoff.EXPONENTIAL,
                              delay_ms=RETRY_DELAY_MS, max_delay_ms=60_000)

video_transcode.upload_step("UploadVideo", order=1, bucket="raw-videos", source="video_file")


def _switch(ctx: StepContext[VideoRequest]) -> None:
    if ctx.request.fail_step == ctx.step and ctx.attempt <= ctx.request.fail_times:
        raise SimulatedFailure(f"{ctx.step} failed on purpose (attempt {ctx.attempt} of "
                               f"{ctx.request.fail_times} requested failures)")


def _compensation_switch(ctx: StepContext[VideoRequest]) -> None:
    if ctx.request.fail_compensation_of == ctx.step:
        raise SimulatedFailure(f"compensation of {ctx.step} failed on purpose")


def _source_url(ctx: StepContext[VideoRequest]) -> str:
    video = ctx.request.video_file
    return ctx.store.presigned_get_url(video.bucket, video.key)


@video_transcode.step("ExtractMetadata", order=2, reads=(), requires={"ffmpeg"})
def extract_metadata(ctx: StepContext[VideoRequest]) -> MetadataData:
    _switch(ctx)
    info = media.probe(_source_url(ctx))
    return MetadataData(width=info.width, height=info.height, duration_s=info.duration_s,
                        codec=info.codec, frame_rate=info.frame_rate)


def is_source_4k_or_higher(ctx: SagaContext[VideoRequest]) -> bool:
    metadata = ctx.data(MetadataData)
    return metadata.width >= 3840 and metadata.height >= 2160


def source_size(ctx: SagaContext[VideoRequest]) -> str:
    metadata = ctx.data(MetadataData)
    return f"Width={metadata.width}, Height={metadata.height}"


video_transcode.group("TranscodeAll", order=3, mode=AwaitMode.ALL)


def _transcode(ctx: StepContext[VideoRequest]) -> TranscodeData:
    _switch(ctx)
    resolution, height = RESOLUTIONS[ctx.step]
    metadata = ctx.data(MetadataData)
    # ffmpeg's output is spooled to a temporary file and published only once ffmpeg succeeded:
    # a failed or cancelled attempt publishes nothing (the references an attempt that fails
    # holds are not released, docs/dsl.md "Artifacts"), so no partial rendition is kept.
    with tempfile.TemporaryFile() as spool:
        media.run_ffmpeg(
            media.transcode_args(_source_url(ctx), height),
            lambda stdout: shutil.copyfileobj(stdout, spool), metadata.duration_s,
            ctx.cancelled, lambda done: ctx.heartbeat(done, f"{resolution} {done:.0%}"),
        )
        spool.seek(0)
        ref = ctx.artifacts.publish(rendition_artifact(resolution), spool)
    return TranscodeData.of(resolution, ref)


def _fail_compensation_on_request(ctx: StepContext[VideoRequest], data: TranscodeData) -> None:
    # The rendition itself is released by the worker after this handler (a producer's
    # compensation); the handler only carries the failure switch.
    _compensation_switch(ctx)


for _step in RESOLUTIONS:
    video_transcode.step(
        _step, order=3, group="TranscodeAll", data=TranscodeData, retry=transcode_retry,
        heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S, reads=["ExtractMetadata"],
        requires={"ffmpeg"}, produces=[rendition_artifact(RESOLUTIONS[_step][0])],
    )(_transcode)
    video_transcode.compensation(_step)(_fail_compensation_on_request)

video_transcode.condition("Transcode4K", "Source >= 4K", is_source_4k_or_higher,
                          summary=source_size)


@video_transcode.step("GenerateThumbnails", order=4, reads=["ExtractMetadata"],
                      requires={"ffmpeg"})
def generate_thumbnails(ctx: StepContext[VideoRequest]) -> ThumbnailsData:
    _switch(ctx)
    metadata = ctx.data(MetadataData)
    url = _source_url(ctx)
    keys = []
    for index, fraction in enumerate((0.1, 0.5, 0.9)):
        key = f"{ctx.task_id}/thumbnails/{index}.jpg"

        def upload(stdout: IO[bytes], key: str = key) -> None:
            ctx.store.put_stream(OUTPUT_BUCKET, key, stdout, "image/jpeg")

        media.run_ffmpeg(media.thumbnail_args(url, metadata.duration_s * fraction), upload,
                         0.0, ctx.cancelled, lambda _done: None)
        keys.append(key)
        ctx.heartbeat((index + 1) / 3, f"thumbnail {index + 1} of 3")
    return ThumbnailsData(bucket=OUTPUT_BUCKET, keys=keys)


@video_transcode.compensation("GenerateThumbnails")
def delete_thumbnails(ctx: StepContext[VideoRequest], data: ThumbnailsData) -> None:
    _compensation_switch(ctx)
    for key in data.keys:
        ctx.store.delete(data.bucket, key)


def _renditions(ctx: SagaContext[VideoRequest]) -> dict[str, TranscodeData]:
    return {
        ctx.data_of(step, TranscodeData).resolution: ctx.data_of(step, TranscodeData)
        for step in RESOLUTIONS if ctx.has_data(step)
    }


@video_transcode.step("UpdateCatalog", order=5,
                      reads=["ExtractMetadata", "GenerateThumbnails", *RESOLUTIONS])
def update_catalog(ctx: StepContext[VideoRequest]) -> CatalogData:
    _switch(ctx)
    catalog.upsert_entry(ctx.task_id, ctx.request.title, ctx.data(MetadataData).duration_s,
                         {resolution: rendition.sha256  # the artifact's address
                          for resolution, rendition in _renditions(ctx).items()},
                         ctx.data(ThumbnailsData).keys)
    return CatalogData(entry_id=ctx.task_id)


@video_transcode.compensation("UpdateCatalog")
def remove_catalog_entry(ctx: StepContext[VideoRequest], data: CatalogData) -> None:
    _compensation_switch(ctx)
    catalog.delete_entry(data.entry_id)


@video_transcode.step(
    "NotifyWebhook", order=6, reads=list(RESOLUTIONS),
    retry=RetryPolicy(max_retries=1, backoff=Backoff.CONSTANT, delay_ms=3000),
)
def notify_webhook(ctx: StepContext[VideoRequest]) -> NotifyData:
    _switch(ctx)
    if ctx.request.callback_url is None:
        return NotifyData(delivered=False)
    # The SSRF guard again at send time (the API vetted the URL at submit time, but its
    # name may resolve elsewhere now), and a POST that connects only to the vetted
    # addresses and follows no redirect. Errors stay generic: they reach the submitter.
    try:
        vetted = _WEBHOOK_GUARD.vet(ctx.request.callback_url)
    except UnresolvedHost:
        raise RuntimeError("webhook connection failed") from None  # DNS may recover: retry
    except UnsafeUrl as refused:
        raise NonRetryableError(f"callback URL refused: {refused.public_reason}") from None
    body = {"task_id": ctx.task_id, "title": ctx.request.title,
            "renditions": {resolution: rendition.model_dump()
                           for resolution, rendition in _renditions(ctx).items()}}
    reply = _WEBHOOK_POSTER.post(vetted, json.dumps(body).encode(), {
        # Stable across attempts: a receiver that dedupes by it gets one notification.
        "Content-Type": "application/json", "Idempotency-Key": ctx.step_key})
    if reply.status_code is None or reply.status_code >= 500:
        raise RuntimeError(f"webhook {reply.error}")
    if 300 <= reply.status_code < 400:
        raise NonRetryableError(f"webhook answered {reply.error}: redirects are not followed")
    if reply.error is not None:
        raise NonRetryableError(f"webhook refused the notification: {reply.error}")
    return NotifyData(delivered=True, status_code=reply.status_code)


@video_transcode.response_builder
def video_response(ctx: SagaContext[VideoRequest]) -> VideoResponse:
    return VideoResponse(
        renditions=_renditions(ctx),
        thumbnail_keys=ctx.data(ThumbnailsData).keys,
        catalog_entry_id=ctx.data(CatalogData).entry_id,
    )


def make_test_video(path: str, width: int, height: int, seconds: float = 3.0) -> None:
    """Write a test video made by ffmpeg itself (pattern and tone) to ``path``."""
    import subprocess

    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc2=size={width}x{height}:rate=24:duration={seconds}", "-f", "lavfi", "-i",
         f"sine=frequency=440:duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
         "-crf", "32", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", path],
        check=True, timeout=300,
    )

