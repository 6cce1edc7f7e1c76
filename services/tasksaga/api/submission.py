"""Turns an HTTP submission (JSON, or multipart with files) into a validated request.

File parts are streamed from Starlette's spooled temporary files to object storage part by
part; a file is never held whole in memory.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from tasksaga.core.definition import TaskDefinition, UploadedFile, UploadStepData
from tasksaga.core.messages import ApiStepResult
from tasksaga.core.ports import ObjectStore

_TASK_ID_NAMESPACE = uuid.UUID("5f0c7c6e-7d3b-4d5e-9a51-3b8f1f0d7a10")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class SubmissionError(ValueError):
    """The submission is wrong; the message says what to change. ``errors`` are field-level."""

    def __init__(self, message: str, errors: list[Any] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


def task_id_for(task_type: str, idempotency_key: str | None) -> str:
    """Same Idempotency-Key, same task id: a repeated submission is the same task."""
    if idempotency_key:
        return str(uuid.uuid5(_TASK_ID_NAMESPACE, f"{task_type}:{idempotency_key}"))
    return str(uuid.uuid4())


def file_fields(definition: TaskDefinition) -> dict[str, str]:
    """Request field -> the upload step that takes it."""
    return {s.upload.source: s.name for s in definition.upload_steps() if s.upload}


def validate_request(definition: TaskDefinition, values: dict[str, Any]) -> BaseModel:
    try:
        return definition.request_type.model_validate(values)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()
        )
        raise SubmissionError(
            f"invalid request for task type {definition.name!r}: {problems}",
            error.errors(include_url=False, include_context=False),
        ) from error


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
    objects: ObjectStore,
) -> tuple[BaseModel, list[ApiStepResult]]:
    """Stream the files to object storage (runs the API-placed upload steps)."""
    values = dict(submission.values)
    results: list[ApiStepResult] = []
    request_fields = definition.request_type.model_fields
    for step in definition.upload_steps():
        assert step.upload is not None
        stored: list[UploadedFile] = []
        for index, upload in enumerate(submission.files[step.upload.source]):
            filename = upload.filename or f"file-{index}"
            key = f"{task_id}/{step.name}/{index:03d}-{_UNSAFE.sub('_', filename)}"
            content_type = upload.content_type or "application/octet-stream"
            size = objects.put_stream(step.upload.bucket, key, upload.file, content_type)
            stored.append(UploadedFile(bucket=step.upload.bucket, key=key, filename=filename,
                                       content_type=content_type, size=size))
        annotation = request_fields[step.upload.source].annotation
        values[step.upload.source] = (
            stored[0].model_dump() if annotation is UploadedFile
            else [f.model_dump() for f in stored]
        )
        results.append(ApiStepResult(step.name, UploadStepData(files=stored).model_dump_json()))
    return validate_request(definition, values), results
