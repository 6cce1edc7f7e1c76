"""A worker's cache of verified artifact parts, keyed by their SHA-256 and bounded in bytes.

Steps of one worker often open the same artifact (a source several renditions read): a part
read and verified once is served from memory the next time. Keyed by the part's checksum, an
entry can never be stale, and is shared by every artifact that contains the same part.
Parallel steps that ask for the same part at once download it once: the first loads it, the
others wait for it (``get_or_load``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable


class PartCache:
    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be 0 (no cache) or more, got {max_bytes}")
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._parts: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._loading: dict[str, threading.Lock] = {}  # a part being downloaded: its loader's

    def get_or_load(self, sha256: str, load: Callable[[], bytes]) -> bytes:
        """The cached part, or ``load()``'s (verified) result, kept. While one caller loads a
        part, others asking for it wait and take what it loaded; if that load failed, the
        next waiter loads it itself (and fails the same way, or not)."""
        while True:
            part = self.get(sha256)
            if part is not None:
                return part
            with self._lock:
                loading = self._loading.get(sha256)
                if loading is None:
                    loading = self._loading[sha256] = threading.Lock()
                    loading.acquire()
                    break
            with loading:  # wait for the loader, then look again
                pass
        try:
            part = load()
            self.put(sha256, part)
            return part
        finally:
            with self._lock:
                del self._loading[sha256]
            loading.release()

    def get(self, sha256: str) -> bytes | None:
        with self._lock:
            part = self._parts.get(sha256)
            if part is not None:
                self._parts.move_to_end(sha256)  # least recently used goes first
            return part

    def put(self, sha256: str, part: bytes) -> None:
        """Keep ``part`` (already verified against ``sha256``), evicting the least recently
        used parts to stay within ``max_bytes``; a part larger than that is not kept."""
        if len(part) > self.max_bytes:
            return
        with self._lock:
            if sha256 in self._parts:
                self._parts.move_to_end(sha256)
                return
            self._parts[sha256] = part
            self._bytes += len(part)
            while self._bytes > self.max_bytes:
                _, evicted = self._parts.popitem(last=False)
                self._bytes -= len(evicted)

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return self._bytes
