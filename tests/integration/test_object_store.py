"""Streaming object I/O against the real MinIO: large objects in bounded memory."""

from __future__ import annotations

import hashlib
import io
import tracemalloc
import uuid

from tasksaga.adapters.object_store import PART_SIZE, MinioObjectStore


class GeneratedStream(io.RawIOBase):
    """Deterministic bytes produced on demand: the whole object never exists in memory."""

    def __init__(self, size: int) -> None:
        self.remaining = size
        self.digest = hashlib.sha256()
        self._block = bytes(range(256)) * 4096  # 1 MiB

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = min(self.remaining, len(self._block), size if size >= 0 else self.remaining)
        data = self._block[:size]
        self.remaining -= len(data)
        self.digest.update(data)
        return data


def test_a_large_object_streams_up_and_down_in_bounded_memory(stack_env: dict[str, str]) -> None:
    store = MinioObjectStore(stack_env["TASKSAGA_S3_ENDPOINT"],
                             stack_env["TASKSAGA_S3_ACCESS_KEY"],
                             stack_env["TASKSAGA_S3_SECRET_KEY"])
    size = 16 * PART_SIZE + 12345  # many multipart parts and a ragged tail
    key = f"stream-test/{uuid.uuid4()}"
    source = GeneratedStream(size)
    tracemalloc.start()
    stored = store.put_stream("tasksaga-tests", key, source)  # type: ignore[arg-type]
    downloaded = hashlib.sha256()
    count = 0
    for chunk in store.open_stream("tasksaga-tests", key):
        downloaded.update(chunk)
        count += len(chunk)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert stored == size == count
    assert downloaded.hexdigest() == source.digest.hexdigest()
    # The client uploads a few parts in parallel, each buffered once: memory is bounded by
    # a handful of parts, whatever the object's size.
    assert peak < 7 * PART_SIZE < size / 2, f"peak {peak} bytes for a {size}-byte object"
    store.delete("tasksaga-tests", key)
    assert not store.exists("tasksaga-tests", key)
