"""The verdict on one offered rate, and the search for the highest sustainable one. Pure: no
clock, no I/O (tests/unit/test_bench_loadgen.py)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    sustainable: bool
    reason: str


def sustainability(
    offered: float,
    achieved: float,
    backlog_slope: float,
    final_backlog: float,
    tolerance: float = 0.05,
    completed_all: bool = True,
    window_s: float = 10.0,
) -> Verdict:
    """Achieved equals offered (within ``tolerance``) and the backlog stays flat.

    Flat means the backlog grew by less than ``tolerance`` x offered per second (plus one
    request per second over a 10 s window, so that a few requests of noise at low rates do
    not count) over the measurement window: queueing that only shifts latency is allowed,
    growth is not. And what is left at the end is under one second of offered load.
    """
    if not completed_all:
        return Verdict(False, "some requests never completed")
    quantum = 1.0 / window_s  # one request more or less in the window
    if achieved < (1 - tolerance) * offered - quantum:
        return Verdict(False, f"achieved {achieved:.1f}/s < offered {offered:.1f}/s")
    if backlog_slope > tolerance * offered + 10 * quantum:
        return Verdict(False, f"backlog grows {backlog_slope:.1f}/s")
    if final_backlog > max(offered, 5.0):
        return Verdict(False, f"backlog {final_backlog:.0f} at the end of the window")
    return Verdict(True, "achieved = offered, backlog flat")


# -- the rate search ------------------------------------------------------------------------------


def next_rate(
    history: Sequence[tuple[float, bool]],
    start: float,
    up: float = 1.3,
    down: float = 0.75,
    resolution: float = 1.1,
    max_points: int = 8,
    floor: float = 1.0,
) -> float | None:
    """The next offered rate to try, or None when the search is done.

    ``history`` holds (rate, sustainable) pairs. Go up by ``up`` while every rate passed and
    down by ``down`` while every rate failed; once a pass and a fail bracket the limit, bisect
    (geometric mean) until the bracket is within ``resolution`` (hi / lo).

    ``max_points`` bounds the search once a pass and a fail above it bracket the limit. Until
    then the search goes on (to twice the budget; down never below ``floor``): a start above
    capacity must not end the sweep with no maximum, nor a start below it with a maximum that
    is only the last rate the budget reached.
    """
    if not history:
        return start
    passed = [r for r, ok in history if ok]
    failed = [r for r, ok in history if not ok]
    unbracketed_budget = len(history) < 2 * max_points
    if not passed:
        candidate = min(failed) * down
        return candidate if candidate >= floor and unbracketed_budget else None
    lo = max(passed)
    above = [r for r in failed if r > lo]
    if not above:
        return lo * up if unbracketed_budget else None
    if len(history) >= max_points:
        return None
    hi = min(above)
    if hi / lo <= resolution:
        return None
    return math.sqrt(lo * hi)


def max_sustainable(history: Iterable[tuple[float, bool]]) -> float | None:
    """The highest rate that passed, below the lowest rate that failed above it."""
    passed = sorted(r for r, ok in history if ok)
    return passed[-1] if passed else None
