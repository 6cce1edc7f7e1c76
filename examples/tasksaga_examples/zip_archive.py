"""The ZIP example (seed 000, Part III): upload files, archive them, publish a manifest.

UploadFiles runs on the API (files are streamed to MinIO before the task is accepted, each
also published as the artifact ``upload[i]``, SHA-256 computed while streaming);
CreateArchive opens every upload (each part verified against the upload's hashes) into one
ZIP and publishes it as the artifact
``archive`` (content-addressed, checksummed parts in bucket ``artifacts``); PublishManifest
opens that artifact (every part verified before it is read) and writes a manifest with the
archive's SHA-256. Set ``fail_at_last_step`` to see compensation: the archive's reference is
released (its parts deleted when no task holds them any more) and the uploads are deleted
and their artifacts released, in
reverse order of completion.
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
from tasksaga.core.artifacts import BUCKET as ARTIFACT_BUCKET
from tasksaga.core.artifacts import ArtifactRef
from tasksaga.core.errors import NonRetryableError

ARCHIVE_BUCKET = "zip-archives"  # the manifests; the archives are artifacts
ARCHIVE = "archive"  # the artifact CreateArchive publishes and PublishManifest opens
UPLOADS = "upload"  # UploadFiles publishes upload[0], upload[1], ... for CreateArchive


class ZipRequest(BaseModel):
    files: list[UploadedFile]
    archive_name: str = Field(default="archive.zip", pattern=r"^[A-Za-z0-9._-]+\.zip$")
    fail_at_last_step: bool = False


class ArchiveEntry(BaseModel):
    name: str
    size: int
    crc32: int


class ArchiveData(BaseModel):
    """The published archive: its artifact's SHA-256, size and part objects (in order)."""

    sha256: str
    size: int
    bucket: str
    parts: list[str]
    entries: list[ArchiveEntry]

    @classmethod
    def of(cls, ref: ArtifactRef, entries: list[ArchiveEntry]) -> ArchiveData:
        return cls(sha256=ref.sha256, size=ref.size, bucket=ARTIFACT_BUCKET,
                   parts=[ref.part_key(index) for index in range(ref.parts)], entries=entries)


class ManifestData(BaseModel):
    bucket: str
    key: str
    archive_sha256: str


class ZipResponse(BaseModel):
    """``archive_parts`` are the archive's objects in ``archive_bucket``: concatenated in
    order they are the ZIP (whose SHA-256 is ``archive_sha256``)."""

    archive_bucket: str
    archive_parts: list[str]
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

create_zip.upload_step("UploadFiles", order=1, bucket="zip-uploads", source="files",
                       produces=UPLOADS)


@create_zip.step(
    "CreateArchive", order=2, reads=(),  # the uploads' names are in the request
    retry=RetryPolicy(max_retries=3, delay_ms=500, max_delay_ms=5_000, jitter=0.2),
    consumes=[UPLOADS],
    produces=[ARCHIVE],  # compensating the step releases it: no compensation handler needed
)
def create_archive(ctx: StepContext[ZipRequest]) -> ArchiveData:
    entries: list[ArchiveEntry] = []
    # The archive is assembled in a temporary file, never in memory, then published in parts.
    with tempfile.TemporaryFile() as spool:
        with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for index, file in enumerate(ctx.request.files):
                if ctx.is_cancelled():
                    raise NonRetryableError("cancelled while archiving")
                name = _unique_name(file.filename, entries)
                with archive.open(name, "w", force_zip64=True) as member:
                    # upload[i] is ctx.request.files[i]: verified as it was uploaded.
                    for chunk in ctx.artifacts.open(f"{UPLOADS}[{index}]"):
                        member.write(chunk)
                info = archive.getinfo(name)
                entries.append(ArchiveEntry(name=name, size=info.file_size, crc32=info.CRC))
                ctx.heartbeat((index + 1) / len(ctx.request.files), f"archived {name}")
        spool.seek(0)
        ref = ctx.artifacts.publish(ARCHIVE, spool)
    return ArchiveData.of(ref, entries)


@create_zip.step("PublishManifest", order=3, reads=["CreateArchive"], consumes=[ARCHIVE])
def publish_manifest(ctx: StepContext[ZipRequest]) -> ManifestData:
    archive = ctx.data(ArchiveData)
    # Reading the artifact checks every part against its published SHA-256, and the whole.
    digest = hashlib.sha256()
    for chunk in ctx.artifacts.open(ARCHIVE):
        digest.update(chunk)
    if ctx.request.fail_at_last_step:
        raise NonRetryableError("PublishManifest was asked to fail (fail_at_last_step=true)")
    manifest: dict[str, Any] = {
        "task_id": ctx.task_id,
        "archive": {"bucket": archive.bucket, "parts": archive.parts, "size": archive.size,
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
        archive_bucket=archive.bucket, archive_parts=archive.parts, archive_size=archive.size,
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
