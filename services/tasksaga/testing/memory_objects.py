"""Object storage in memory (the ``ObjectStore`` port), for sagas whose steps read and write
files. Buckets appear on first write, as the MinIO adapter creates them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import IO

CHUNK_SIZE = 64 * 1024  # the MinIO adapter's read chunk: handlers see the same chunking


class InMemoryObjectStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[tuple[str, str], tuple[bytes, str]] = {}

    def put_stream(self, bucket: str, key: str, stream: IO[bytes],
                   content_type: str = "application/octet-stream") -> int:
        _check_name(bucket, key)
        parts = []
        while chunk := stream.read(CHUNK_SIZE):
            parts.append(chunk)
        data = b"".join(parts)
        with self._lock:
            self._objects[(bucket, key)] = (data, content_type)
        return len(data)

    def open_stream(self, bucket: str, key: str) -> Iterator[bytes]:
        data = self.read(bucket, key)
        for start in range(0, len(data), CHUNK_SIZE):
            yield data[start:start + CHUNK_SIZE]

    def delete(self, bucket: str, key: str) -> None:
        with self._lock:
            self._objects.pop((bucket, key), None)  # idempotent, as an S3 delete is

    def exists(self, bucket: str, key: str) -> bool:
        with self._lock:
            return (bucket, key) in self._objects

    def presigned_get_url(self, bucket: str, key: str, expires_s: int = 3600) -> str:
        if expires_s <= 0:
            raise ValueError(f"a presigned URL must expire in the future, got {expires_s} s")
        return f"memory://{bucket}/{key}?expires={expires_s}"

    def copy(self, bucket: str, source_key: str, target_key: str) -> None:
        _check_name(bucket, target_key)
        with self._lock:
            found = self._objects.get((bucket, source_key))
            if found is None:
                raise FileNotFoundError(f"no object {source_key!r} in bucket {bucket!r}")
            self._objects[(bucket, target_key)] = found

    # -- for assertions ------------------------------------------------------------------------

    def read(self, bucket: str, key: str) -> bytes:
        """The whole object (a test's convenience; handlers stream with ``open_stream``)."""
        with self._lock:
            found = self._objects.get((bucket, key))
        if found is None:
            raise FileNotFoundError(f"no object {key!r} in bucket {bucket!r}")
        return found[0]

    def replace_bytes(self, bucket: str, key: str, data: bytes) -> None:
        """Overwrite an object's bytes in place (a test's way to corrupt storage)."""
        with self._lock:
            _, content_type = self._objects[(bucket, key)]
            self._objects[(bucket, key)] = (data, content_type)

    def keys(self, bucket: str) -> list[str]:
        with self._lock:
            return sorted(k for b, k in self._objects if b == bucket)


def _check_name(bucket: str, key: str) -> None:
    if not bucket or not key:
        raise ValueError(f"an object needs a bucket and a key, got {bucket!r} and {key!r}")
