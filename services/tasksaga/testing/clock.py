"""A clock that moves only when the test moves it (the ``Clock`` port)."""

from __future__ import annotations

# 2026-01-01T00:00:00Z: a fixed, readable start, so audit lines and timers are reproducible.
DEFAULT_START_MS = 1_767_225_600_000


class ManualClock:
    """Milliseconds since the epoch, advanced by the test: durable timers and retry backoffs
    fall due when it passes them, without any real waiting."""

    def __init__(self, start_ms: int = DEFAULT_START_MS) -> None:
        if start_ms < 0:
            raise ValueError(f"the clock cannot start before the epoch, got {start_ms} ms")
        self._now_ms = start_ms

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, ms: int = 0, *, seconds: float = 0.0) -> int:
        """Move forward by ``ms`` plus ``seconds``; the new time. Time never goes back: a test
        that needs an earlier time starts a new clock."""
        step = ms + round(seconds * 1000)
        if step < 0:
            raise ValueError(f"a ManualClock only moves forward; asked to move {step} ms")
        self._now_ms += step
        return self._now_ms

    def advance_to(self, at_ms: int) -> int:
        """Move forward to ``at_ms`` (no move when it is already past it); the new time."""
        self._now_ms = max(self._now_ms, at_ms)
        return self._now_ms
