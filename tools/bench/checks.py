"""Correctness of a run, checked after it: a run that fails its check reports no figures.

The same invariants as tests/e2e/checks.py (no version gaps, no duplicated transition, one
terminal event and it is the last) plus the counts a workload implies: each task's events are
exactly the expected multiset, and every task ended as expected (completed or compensated).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

TERMINAL_TYPES = ("TaskCompleted", "TaskFailed", "TaskCancelled", "TaskCompensationFailed",
                  "TaskNeedsAttention")


def stream_problems(
    task_id: str,
    versions: Sequence[int],
    events: Sequence[Any],
    expected: Mapping[str, int],
    expected_terminal: str,
) -> list[str]:
    """Problems of one task's stream; ``events`` are decoded payloads in version order."""
    problems: list[str] = []
    if list(versions) != list(range(1, len(versions) + 1)):
        problems.append(f"{task_id}: versions {list(versions)}")
    transitions = Counter(
        (type(e).__name__, getattr(e, "step", None), getattr(e, "attempt", None)) for e in events
    )
    duplicated = sorted(str(t) for t, n in transitions.items() if n > 1)
    if duplicated:
        problems.append(f"{task_id}: duplicated transitions {duplicated}")
    terminal = [type(e).__name__ for e in events if type(e).__name__ in TERMINAL_TYPES]
    if terminal != [expected_terminal] or type(events[-1]).__name__ != expected_terminal:
        problems.append(f"{task_id}: terminal events {terminal}, expected [{expected_terminal}]")
    counts = Counter(type(e).__name__ for e in events)
    if counts != Counter(expected):
        problems.append(f"{task_id}: events {dict(counts)}, expected {dict(expected)}")
    return problems


def outcome_problems(outcomes: Mapping[str, str | None], expected: Mapping[str, str]) -> list[str]:
    """Every task reported exactly the outcome its request asked for."""
    problems = []
    for task_id, want in expected.items():
        got = outcomes.get(task_id)
        if got != want:
            problems.append(f"{task_id}: ended {got}, expected {want}")
    return problems
