"""The ZIP example (seed 000, Part III): upload files, archive them, publish a manifest.

UploadFiles runs on the API (files are streamed to MinIO before the task is accepted);
CreateArchive streams every upload from MinIO into one ZIP stored back in MinIO;
PublishManifest writes a manifest with the archive's SHA-256. Set ``fail_at_last_step`` to see
compensation: the archive and the uploads are deleted, in reverse order of completion.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
from io import BytesIO
from typing import Any

from pydantic import BaseModel, Field

from tasksaga.core import RetryPolicy, SagaContext, StepContext, TaskDefinition, UploadedFile
from tasksaga.core.errors import NonRetryableError

ARCHIVE_BUCKET = "zip-archives"


class ZipRequest(BaseModel):
    files: list[UploadedFile]
    archive_name: str = Field(default="archive.zip", pattern=r"^[A-Za-z0-9._-]+\.zip$")
    fail_at_last_step: bool = False


class ArchiveEntry(BaseModel):
    name: str
    size: int
    crc32: int


class ArchiveData(BaseModel):
    bucket: str
    key: str
    size: int
    entries: list[ArchiveEntry]


class ManifestData(BaseModel):
    bucket: str
    key: str
    archive_sha256: str


class ZipResponse(BaseModel):
    archive_bucket: str
    archive_key: str
    archive_size: int
    archive_sha256: str
    manifest_key: str
    entries: list[ArchiveEntry]


create_zip = TaskDefinition(
    "CreateZip",
    queue="zip",
    request=ZipRequest,
    response=ZipResponse,
    max_retries=2,
    timeout_seconds=600,
    cancellable=True,
    step_timeout_seconds=120,
)

create_zip.upload_step("UploadFiles", order=1, bucket="zip-uploads", source="files")


@create_zip.step(
    "CreateArchive", order=2, reads=(),  # the uploads are in the request
    retry=RetryPolicy(max_retries=3, delay_ms=500, max_delay_ms=5_000, jitter=0.2),
)
def create_archive(ctx: StepContext[ZipRequest]) -> ArchiveData:
    key = f"{ctx.task_id}/{ctx.request.archive_name}"
    entries: list[ArchiveEntry] = []
    # The archive is assembled in a temporary file, never in memory, then streamed to MinIO.
    with tempfile.TemporaryFile() as spool:
        with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for index, file in enumerate(ctx.request.files):
                if ctx.is_cancelled():
                    raise NonRetryableError("cancelled while archiving")
                name = _unique_name(file.filename, entries)
                with archive.open(name, "w", force_zip64=True) as member:
                    for chunk in ctx.store.open_stream(file.bucket, file.key):
                        member.write(chunk)
                info = archive.getinfo(name)
                entries.append(ArchiveEntry(name=name, size=info.file_size, crc32=info.CRC))
                ctx.heartbeat((index + 1) / len(ctx.request.files), f"archived {name}")
        size = spool.tell()
        spool.seek(0)
        ctx.store.put_stream(ARCHIVE_BUCKET, key, spool, "application/zip")
    return ArchiveData(bucket=ARCHIVE_BUCKET, key=key, size=size, entries=entries)


@create_zip.compensation("CreateArchive")
def delete_archive(ctx: StepContext[ZipRequest], data: ArchiveData) -> None:
    ctx.store.delete(data.bucket, data.key)


@create_zip.step("PublishManifest", order=3, reads=["CreateArchive"])
def publish_manifest(ctx: StepContext[ZipRequest]) -> ManifestData:
    archive = ctx.data(ArchiveData)
    digest = hashlib.sha256()
    for chunk in ctx.store.open_stream(archive.bucket, archive.key):
        digest.update(chunk)
    if ctx.request.fail_at_last_step:
        raise NonRetryableError("PublishManifest was asked to fail (fail_at_last_step=true)")
    manifest: dict[str, Any] = {
        "task_id": ctx.task_id,
        "archive": {"bucket": archive.bucket, "key": archive.key, "size": archive.size,
                    "sha256": digest.hexdigest()},
        "entries": [e.model_dump() for e in archive.entries],
    }
    key = f"{ctx.task_id}/manifest.json"
    ctx.store.put_stream(ARCHIVE_BUCKET, key, BytesIO(json.dumps(manifest).encode()),
                         "application/json")
    return ManifestData(bucket=ARCHIVE_BUCKET, key=key, archive_sha256=digest.hexdigest())


@create_zip.compensation("PublishManifest")
def delete_manifest(ctx: StepContext[ZipRequest], data: ManifestData) -> None:
    ctx.store.delete(data.bucket, data.key)


@create_zip.response_builder
def zip_response(ctx: SagaContext[ZipRequest]) -> ZipResponse:
    archive = ctx.data(ArchiveData)
    manifest = ctx.data(ManifestData)
    return ZipResponse(
        archive_bucket=archive.bucket, archive_key=archive.key, archive_size=archive.size,
        archive_sha256=manifest.archive_sha256, manifest_key=manifest.key,
        entries=archive.entries,
    )


def _unique_name(filename: str, entries: list[ArchiveEntry]) -> str:
    taken = {e.name for e in entries}
    name, counter = filename, 1
    while name in taken:
        counter += 1
        stem, dot, suffix = filename.rpartition(".")
        name = f"{stem}-{counter}.{suffix}" if dot else f"{filename}-{counter}"
    return name
