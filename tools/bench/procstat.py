"""CPU used by groups of processes over a window, from /proc/<pid>/stat (Linux only).

A group is a root pid and, optionally, every descendant (Postgres backends are children of the
postmaster, Celery's pool processes children of its main process). Shares are CPU seconds per
wall second: 1.0 is one core busy for the whole window; this machine has ``os.cpu_count()``.
Processes that start or end inside the window count for the part of it they were seen in.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
MACHINE = "machine (all processes)"
OTHERS = "other processes (not part of the run)"


@dataclass(frozen=True)
class ProcessGroup:
    name: str
    pid: int
    children: bool = True


@dataclass(frozen=True)
class Snapshot:
    at: float
    ticks: dict[int, int]  # pid -> utime + stime


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, utime + stime ticks) of a process, None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = _after_name(raw)
    return int(fields[1]), _ticks(fields)


def _after_name(stat: str) -> list[str]:
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    return stat[stat.rindex(")") + 2:].split()


def _ticks(fields: list[str]) -> int:
    return int(fields[11]) + int(fields[12])  # utime + stime


def cpu_ticks(stat: str) -> int:
    """utime + stime of a process's or thread's ``stat`` line, in clock ticks."""
    return _ticks(_after_name(stat))


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def parents() -> dict[int, int]:
    """pid -> parent pid of every process now running."""
    found = {}
    for pid in _all_pids():
        stat = _stat(pid)
        if stat is not None:
            found[pid] = stat[0]
    return found


def descendants(root: int, parents: Mapping[int, int]) -> set[int]:
    """``root`` and every process below it, from a pid -> parent pid map."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found = {root}
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def machine_ticks() -> int:
    """Busy ticks of the whole machine (user+nice+system+irq+softirq+steal) from /proc/stat."""
    line = Path("/proc/stat").read_text().splitlines()[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in line[1:9])
    return user + nice + system + irq + softirq + steal


def snapshot(groups: Iterable[ProcessGroup]) -> dict[str, Snapshot]:
    stats: dict[int, tuple[int, int]] = {}
    for pid in _all_pids():
        stat = _stat(pid)
        if stat is not None:
            stats[pid] = stat
    parents = {pid: parent for pid, (parent, _) in stats.items()}
    now = time.time()
    result: dict[str, Snapshot] = {}
    for group in groups:
        pids = descendants(group.pid, parents) if group.children else {group.pid}
        result[group.name] = Snapshot(now, {p: stats[p][1] for p in pids if p in stats})
    result[MACHINE] = Snapshot(now, {0: machine_ticks()})
    return result


def share(before: Snapshot, after: Snapshot) -> float:
    """CPU seconds per wall second between two snapshots of one group."""
    wall = after.at - before.at
    if wall <= 0:
        return 0.0
    used = sum(ticks - before.ticks.get(pid, 0) for pid, ticks in after.ticks.items())
    return max(used, 0) / TICKS / wall


def shares(before: Mapping[str, Snapshot], after: Mapping[str, Snapshot]) -> dict[str, float]:
    """Share per group, plus what the rest of the machine used (other users' processes)."""
    found = {name: round(share(before[name], after[name]), 3)
             for name in after if name in before}
    if MACHINE in found:
        ours = sum(v for k, v in found.items() if k != MACHINE)
        found[OTHERS] = round(max(found[MACHINE] - ours, 0.0), 3)
    return found


def machine_busy(seconds: float = 2.0) -> float:
    """Cores the whole machine kept busy over the next ``seconds``."""
    before = machine_ticks()
    time.sleep(seconds)
    return (machine_ticks() - before) / TICKS / seconds


def wait_for_quiet(threshold: float, max_wait_s: float, log: Callable[[str], None]) -> float:
    """Wait (up to ``max_wait_s``) until other work uses under ``threshold`` cores.

    The machine may be shared (other test runs): figures measured next to a busy neighbour
    are not this system's. Returns the last busy figure seen, which the report shows.
    """
    deadline = time.time() + max_wait_s
    busy = machine_busy()
    while busy > threshold and time.time() < deadline:
        log(f"    machine busy with other work ({busy:.2f} cores): waiting for it to calm down")
        busy = machine_busy(5.0)
    return busy
