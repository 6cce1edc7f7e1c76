"""A sampling profile of a running service with py-spy (``--format raw``: collapsed stacks).

py-spy attaches to the live process: the service runs unmodified. Two recordings: on-CPU
samples only (where the CPU goes), and with ``--idle`` (where the time goes, waits included:
round trips to Postgres, Kafka flushes). ``aggregate`` turns collapsed stacks into shares per
thread, per function (self) and per function including callees; it is pure and unit-tested.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

THREAD_MARKERS = (
    ("ConsumerLoop.run", "consumer loop (handles messages)"),
    ("run_timers", "timers"),
    ("OutboxRelay.publish_pending", "outbox relay"),
    ("Projector.catch_up", "projector"),
    ("run_on_notify", "relay/projector listen loop"),
    ("ConnectionPool.worker", "connection pool"),
)


@dataclass(frozen=True)
class Profile:
    samples: int
    threads: list[tuple[str, float]]
    self_top: list[tuple[str, float]]
    inclusive_top: list[tuple[str, float]]


def _thread_of(frames: list[str]) -> str:
    for marker, label in THREAD_MARKERS:
        if any(marker in frame for frame in frames):
            return label
    return "other"


def _short(frame: str) -> str:
    """'f (pkg/mod.py:12)' -> 'f (pkg/mod.py:12)' with site-packages paths trimmed."""
    return frame.replace("site-packages/", "")


def aggregate(lines: Iterable[str], top: int = 15,
              include: tuple[str, ...] = ("tasksaga/", "psycopg", "confluent", "fastavro",
                                          "pydantic", "json", "opentelemetry")) -> Profile:
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in lines:
        line = line.rstrip()
        if not line:
            continue
        stack, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        threads[_thread_of(frames)] += count
        self_counts[_short(frames[-1])] += count
        for frame in set(frames):
            if any(part in frame for part in include):
                inclusive[_short(frame)] += count
    if total == 0:
        return Profile(0, [], [], [])

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, n / total) for name, n in counter.most_common(top)]

    return Profile(total, shares(threads), shares(self_counts), shares(inclusive))


def record(pid: int, seconds: float, out: Path, idle: bool, rate: int = 100) -> Path | None:
    """py-spy record into ``out`` (collapsed stacks); None when py-spy is unavailable."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        return None
    command = [str(spy), "record", "--pid", str(pid), "--duration", str(int(seconds)),
               "--rate", str(rate), "--format", "raw", "--output", str(out), "--nonblocking"]
    if idle:
        command.append("--idle")
    completed = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if completed.returncode != 0 or not out.exists():
        print(f"    py-spy failed: {completed.stderr.strip()[:300]}")
        return None
    return out
