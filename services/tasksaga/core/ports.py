"""Ports the core talks through. Adapters implement them; the core never imports an adapter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Protocol


class ObjectStore(Protocol):
    """Streaming object storage (MinIO/S3). Objects are never held whole in memory."""

    def put_stream(
        self, bucket: str, key: str, stream: IO[bytes], content_type: str = ...
    ) -> int: ...

    def open_stream(self, bucket: str, key: str) -> Iterator[bytes]: ...

    def delete(self, bucket: str, key: str) -> None: ...

    def exists(self, bucket: str, key: str) -> bool: ...

    def presigned_get_url(self, bucket: str, key: str, expires_s: int = ...) -> str:
        """A time-limited URL for tools that read over HTTP themselves (ffmpeg)."""
        ...


class CancellationSignal(Protocol):
    """Set when the task was cancelled or the step's result is no longer wanted."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...
