"""The Clock port's contract: integer milliseconds since the epoch that never go backwards."""

from __future__ import annotations

from tasksaga.core.ports import Clock

YEAR_2020_MS = 1_577_836_800_000
YEAR_2100_MS = 4_102_444_800_000


class ClockContract:
    """Subclasses provide a ``clock`` fixture."""

    def test_now_is_integer_milliseconds_since_the_epoch(self, clock: Clock) -> None:
        now = clock.now_ms()
        assert isinstance(now, int)
        assert YEAR_2020_MS < now < YEAR_2100_MS  # milliseconds: seconds or ns would be out

    def test_successive_readings_never_go_backwards(self, clock: Clock) -> None:
        readings = [clock.now_ms() for _ in range(1000)]
        assert readings == sorted(readings)
