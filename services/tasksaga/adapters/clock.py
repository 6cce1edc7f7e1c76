"""The real clock and randomness, handed to the pure core as arguments."""

from __future__ import annotations

import random
import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def random_fraction() -> float:
    return random.random()
