"""Hostile bodies: size limits enforced while bytes arrive, and slow senders cut off.

``BodyLimits`` is a pure ASGI middleware: a declared ``Content-Length`` above the limit gets
413 before any byte is read; a chunked body is counted as it streams and refused the moment it
passes the limit; a sender that goes quiet for ``idle_timeout_s`` (or whose body takes longer
than ``total_timeout_s``) is cut off with 408. Multipart files are also limited one by one
(``LimitedMultiPartParser``), so nothing above the limits is ever buffered, in memory or in the
spool files on disk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData, Headers
from starlette.formparsers import MultiPartParser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    def __init__(self, limit: int, what: str = "the request body", received: int = 0) -> None:
        super().__init__(f"{what} is larger than the limit of {limit} bytes")
        self.limit = limit
        self.received = received  # bytes read before the refusal (for the log)


class BodyTimeout(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request body did not arrive within {seconds:g} s")


@dataclass(frozen=True)
class Limits:
    json_bytes: int
    request_bytes: int
    file_bytes: int
    idle_timeout_s: float
    total_timeout_s: float

    def for_content_type(self, content_type: str) -> int:
        if content_type.startswith("multipart/form-data"):
            return self.request_bytes
        return self.json_bytes


class BodyLimits:
    def __init__(self, app: ASGIApp, limits: Limits,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.limits = limits
        self._monotonic = monotonic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit = self.limits.for_content_type(headers.get("content-type", ""))
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await reply(send, 400, "Content-Length must be a number of bytes")
                return
            if int(declared) > limit:
                log.info("refused a body over %d bytes after reading 0 (declared %s)", limit,
                         declared)
                await reply(send, 413, str(BodyTooLarge(limit)))
                return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, self._limited(receive, limit), tracking_send)
        except BodyTooLarge as error:
            log.info("refused a body over %d bytes after reading %d", error.limit,
                     error.received)
            if not started:
                await reply(send, 413, str(error))
        except BodyTimeout as error:
            if not started:
                await reply(send, 408, str(error))

    def _limited(self, receive: Receive, limit: int) -> Receive:
        received = 0
        deadline = self._monotonic() + self.limits.total_timeout_s
        idle = self.limits.idle_timeout_s

        async def limited_receive() -> Message:
            nonlocal received
            wait = min(idle, max(0.0, deadline - self._monotonic()))
            try:
                message = await asyncio.wait_for(receive(), timeout=wait)
            except TimeoutError:
                raise BodyTimeout(idle if wait == idle else self.limits.total_timeout_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, received=received)
            return message

        return limited_receive


async def reply(send: Send, status: int, detail: str) -> None:
    """Answer with a JSON ``detail`` and close the connection (nothing else is read)."""
    import json

    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class LimitedMultiPartParser(MultiPartParser):
    """Starlette's parser, refusing a file part the moment it passes ``file_limit``."""

    def __init__(self, headers: Headers, stream: Any, *, file_limit: int, max_files: int,
                 max_fields: int) -> None:
        super().__init__(headers, stream, max_files=max_files, max_fields=max_fields)
        self._file_limit = file_limit
        self._file_bytes = 0

    def on_part_begin(self) -> None:
        super().on_part_begin()
        self._file_bytes = 0

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current_part.file is not None:
            self._file_bytes += end - start
            if self._file_bytes > self._file_limit:
                raise BodyTooLarge(self._file_limit, "a file part", received=self._file_bytes)
        super().on_part_data(data, start, end)


async def parse_form(request_headers: Headers, stream: Any, limits: Limits,
                     max_files: int) -> FormData:
    parser = LimitedMultiPartParser(request_headers, stream, file_limit=limits.file_bytes,
                                    max_files=max_files, max_fields=1000)
    return await parser.parse()
