"""The real clock and randomness, handed to the pure core as arguments."""

from __future__ import annotations

import random
import time

from tasksaga.adapters import faults


def now_ms() -> int:
    return time.time_ns() // 1_000_000 + faults.clock_offset_ms()  # 0 unless injected


def random_fraction() -> float:
    return random.random()
