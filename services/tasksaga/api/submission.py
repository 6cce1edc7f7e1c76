"""Turns an HTTP submission (JSON, or multipart with files) into a validated request.

File parts are streamed from Starlette's spooled temporary files to object storage part by
part; a file is never held whole in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from tasksaga.core.artifacts import ArtifactRef, indexed_name
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.messages import ApiStepResult
from tasksaga.core.ports import ObjectStore
from tasksaga.core.request_fields import UploadedFile, UploadStepData
from tasksaga.core.steps import StepDef
from tasksaga.worker.artifacts import ArtifactStore

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: Set by the server from the caller's identity and the log, never by a request body.
RESERVED_FIELDS = frozenset({
    "tenant", "tenant_id", "status", "created_by", "submitted_by", "owner", "task_id",
    "roles", "version", "created_at", "updated_at",
})


class SubmissionError(ValueError):
    """The submission is wrong; the message says what to change. ``errors`` are field-level."""

    def __init__(self, message: str, errors: list[Any] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


def task_id_for(secret: bytes, tenant: str, task_type: str, idempotency_key: str | None) -> str:
    """Same tenant and Idempotency-Key, same task id: a repeated submission is the same task.

    The id is a keyed hash (HMAC-SHA256 under the server's secret), so knowing another
    tenant's key gives nothing: its ids can be neither computed nor probed. Two tenants using
    one key get two tasks.
    """
    if idempotency_key:
        message = json.dumps([tenant, task_type, idempotency_key]).encode()
        digest = hmac.new(secret, message, hashlib.sha256).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))
    return str(uuid.uuid4())


def file_fields(definition: TaskDefinition) -> dict[str, str]:
    """Request field -> the upload step that takes it."""
    return {s.upload.source: s.name for s in definition.upload_steps() if s.upload}


def validate_request(definition: TaskDefinition, values: dict[str, Any]) -> BaseModel:
    """Validate, refusing server-set and undeclared fields. Messages name fields and problems
    but never echo the submitted values back."""
    reserved = sorted(set(values) & RESERVED_FIELDS - set(definition.request_type.model_fields))
    if reserved:
        raise SubmissionError(
            f"field {reserved[0]!r} is set by the server, not by the request; remove it",
            [{"loc": [name], "msg": "set by the server", "type": "reserved_field"}
             for name in reserved])
    try:
        validated = definition.request_type.model_validate(values)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()
        )
        raise SubmissionError(
            f"invalid request for task type {definition.name!r}: {problems}",
            error.errors(include_url=False, include_context=False, include_input=False),
        ) from error
    if not definition.allow_extra_fields:
        unknown = undeclared_fields(validated, values)
        if unknown:
            raise SubmissionError(
                f"unknown field {unknown[0]!r} for task type {definition.name!r}: check its "
                "spelling, or declare it in the request model",
                [{"loc": path.split("."), "msg": "not a field of the request", "type":
                  "extra_forbidden"} for path in unknown])
    return validated


def undeclared_fields(model: BaseModel, values: Any, prefix: str = "") -> list[str]:
    """Paths of input keys no model field (nor alias) declares, at any depth."""
    if not isinstance(values, dict):
        return []
    fields = type(model).model_fields
    names = {alias for name, f in fields.items() for alias in (name, f.alias) if alias}
    found = [f"{prefix}{key}" for key in values if key not in names]
    for name, info in fields.items():
        key = info.alias if info.alias in values else name
        value, given = getattr(model, name, None), values.get(key)
        if isinstance(value, BaseModel):
            found += undeclared_fields(value, given, f"{prefix}{key}.")
        elif isinstance(value, list) and isinstance(given, list):
            for index, (item, raw) in enumerate(zip(value, given, strict=False)):
                if isinstance(item, BaseModel):
                    found += undeclared_fields(item, raw, f"{prefix}{key}.{index}.")
    return found


def parse_json_body(definition: TaskDefinition, body: bytes) -> BaseModel:
    uploads = file_fields(definition)
    if uploads:
        raise SubmissionError(
            f"task type {definition.name!r} takes files: send multipart/form-data with file "
            f"parts named {', '.join(repr(f) for f in uploads)}"
        )
    try:
        values = json.loads(body or b"{}")
    except json.JSONDecodeError as error:
        raise SubmissionError(f"the body is not valid JSON: {error}") from error
    if not isinstance(values, dict):
        raise SubmissionError("the JSON body must be an object with the request's fields")
    return validate_request(definition, values)


@dataclass
class MultipartSubmission:
    values: dict[str, Any]
    files: dict[str, list[UploadFile]]


def split_form(definition: TaskDefinition, form: FormData) -> MultipartSubmission:
    """Separate file parts (by the request's file fields) from the other fields."""
    uploads = file_fields(definition)
    values: dict[str, Any] = {}
    if "request" in form and isinstance(form["request"], str):
        try:
            values = json.loads(form["request"])
        except json.JSONDecodeError as error:
            raise SubmissionError(f"form field 'request' is not valid JSON: {error}") from error
    files: dict[str, list[UploadFile]] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name not in uploads:
                raise SubmissionError(
                    f"unexpected file part {name!r}; task type {definition.name!r} takes files "
                    f"in {', '.join(repr(f) for f in uploads) or 'no field'}"
                )
            files.setdefault(name, []).append(value)
        elif name != "request":
            values[name] = value
    for field in uploads:
        if not files.get(field):
            raise SubmissionError(f"missing file: add at least one file part named {field!r}")
    return MultipartSubmission(values, files)


def prevalidate(definition: TaskDefinition, submission: MultipartSubmission) -> None:
    """Check the non-file fields before any byte is uploaded (no orphans for a bad request)."""
    values = dict(submission.values)
    request_fields = definition.request_type.model_fields
    for field, parts in submission.files.items():
        placeholders = [
            UploadedFile(bucket="-", key="-", filename=p.filename or "-", size=0).model_dump()
            for p in parts
        ]
        annotation = request_fields[field].annotation
        values[field] = placeholders[0] if annotation is UploadedFile else placeholders
    validate_request(definition, values)


def store_files(
    definition: TaskDefinition, task_id: str, submission: MultipartSubmission,
    objects: ObjectStore, tenant: str = "default", artifacts: ArtifactStore | None = None,
) -> tuple[BaseModel, list[ApiStepResult]]:
    """Stream the files to object storage (runs the API-placed upload steps); an upload step
    with ``produces=`` also publishes each file as an artifact held by ``task:step``."""
    missing = [s.name for s in definition.upload_steps() if s.produces and artifacts is None]
    if missing:  # before any byte is stored
        raise RuntimeError(f"upload step {missing[0]!r} produces artifacts but this API has no "
                           "artifact store (ApiDependencies.artifacts)")
    values = dict(submission.values)
    results: list[ApiStepResult] = []
    try:
        for step in definition.upload_steps():
            results.append(_store_step_files(definition, task_id, step, submission, objects,
                                             tenant, artifacts, values))
        return validate_request(definition, values), results
    except BaseException:
        release_published(results, task_id, artifacts)  # the files themselves: as before
        raise


def release_published(results: list[ApiStepResult], task_id: str,
                      artifacts: ArtifactStore | None) -> None:
    """Drop the references refused API steps hold (content nobody else holds goes)."""
    for result in results:
        if result.artifacts and artifacts is not None:
            for raw in result.artifacts.values():
                artifacts.release(ArtifactRef.from_json(raw), f"{task_id}:{result.step}")


def _store_step_files(
    definition: TaskDefinition, task_id: str, step: StepDef, submission: MultipartSubmission,
    objects: ObjectStore, tenant: str, artifacts: ArtifactStore | None, values: dict[str, Any],
) -> ApiStepResult:
    assert step.upload is not None
    annotation = definition.request_type.model_fields[step.upload.source].annotation
    stored: list[UploadedFile] = []
    published: dict[str, str] = {}
    try:
        for index, upload in enumerate(submission.files[step.upload.source]):
            filename = upload.filename or f"file-{index}"
            # The tenant leads the key: storage policies and audits can be scoped by prefix.
            key = (f"{_UNSAFE.sub('_', tenant)}/{task_id}/{step.name}/"
                   f"{index:03d}-{_UNSAFE.sub('_', filename)}")
            content_type = upload.content_type or "application/octet-stream"
            size = objects.put_stream(step.upload.bucket, key, upload.file, content_type)
            stored.append(UploadedFile(bucket=step.upload.bucket, key=key, filename=filename,
                                       content_type=content_type, size=size))
            if step.produces and artifacts is not None:
                upload.file.seek(0)  # the spooled file again, hashed while streaming
                name = (step.produces[0] if annotation is UploadedFile
                        else indexed_name(step.produces[0], index))
                published[name] = artifacts.publish(upload.file,
                                                     f"{task_id}:{step.name}").to_json()
    except BaseException:
        release_published([ApiStepResult(step.name, "", published)], task_id, artifacts)
        raise
    values[step.upload.source] = (
        stored[0].model_dump() if annotation is UploadedFile
        else [f.model_dump() for f in stored]
    )
    return ApiStepResult(step.name, UploadStepData(files=stored).model_dump_json(), published)
