"""Artifact references in memory (the ``ArtifactRefs`` port), one lock for every content."""

from __future__ import annotations

import threading
from collections.abc import Callable


class InMemoryArtifactRefs:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders: dict[str, set[str]] = {}

    def hold(self, sha256: str, holder: str, ensure_stored: Callable[[], None]) -> None:
        with self._lock:
            self._holders.setdefault(sha256, set()).add(holder)
            ensure_stored()

    def release(self, sha256: str, holder: str, delete_stored: Callable[[], None]) -> int:
        with self._lock:
            holders = self._holders.get(sha256, set())
            holders.discard(holder)
            if not holders:
                self._holders.pop(sha256, None)
                delete_stored()
            return len(holders)

    def holders(self, sha256: str) -> set[str]:
        """Who holds ``sha256`` (for assertions)."""
        with self._lock:
            return set(self._holders.get(sha256, set()))
