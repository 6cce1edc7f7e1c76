"""Field types a task's request model declares: uploaded files and callback URLs.

``UploadedFile`` is what a file field of the request holds once the API has streamed it to
object storage; ``CallbackUrl`` marks a field as a URL a service will call later, so the API
finds it (``outbound_urls``) and vets it with the SSRF guard at submit time.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field


class UploadedFile(BaseModel):
    """A file field of a request once the API has streamed it to object storage."""

    bucket: str
    key: str
    filename: str
    content_type: str = "application/octet-stream"
    size: int


@dataclass(frozen=True)
class OutboundUrlMarker:
    """Marks a request field as a URL a service will call later (a webhook): the API vets
    it with the SSRF guard at submit time, and the step that calls it vets it again."""


OUTBOUND_URL = OutboundUrlMarker()
#: A request field holding an http(s) URL that a step or the notifier will call.
CallbackUrl = typing.Annotated[str, OUTBOUND_URL, Field(pattern=r"^https?://", max_length=2048)]


def outbound_urls(request_type: type[BaseModel], values: Mapping[str, Any]
                  ) -> list[tuple[str, str]]:
    """(field, URL) of every top-level field declared as ``CallbackUrl`` that has a value."""
    found = []
    for name, info in request_type.model_fields.items():
        if _is_outbound(info.annotation) or OUTBOUND_URL in info.metadata:
            value = values.get(info.alias or name, values.get(name))
            if isinstance(value, str):
                found.append((name, value))
    return found


def _is_outbound(annotation: Any) -> bool:
    if typing.get_origin(annotation) is typing.Annotated:
        return OUTBOUND_URL in annotation.__metadata__
    return any(_is_outbound(arg) for arg in typing.get_args(annotation))


class UploadStepData(BaseModel):
    """Data of a file-upload step: the objects it stored (workers see keys, never bytes)."""

    files: list[UploadedFile]
