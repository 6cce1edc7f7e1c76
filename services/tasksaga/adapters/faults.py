"""Fault-injection hooks for the chaos suite: a process kills itself at a named point.

``TASKSAGA_FAULT_POINTS`` lists ``point:action[@hit]`` entries separated by commas, e.g.
``after_append_before_produce:kill@3,after_produce_before_delete:exit``:

* ``kill`` sends SIGKILL to the process itself (no cleanup, no flush, like ``kill -9``);
* ``exit`` calls ``os._exit(137)`` (no ``finally`` blocks, no atexit handlers either);
* ``@hit`` fires on that hit of the point (1 = the first, the default), so a test can let a
  process do some work before it dies there.

Unset (production), ``hit`` is a dictionary lookup on an empty mapping: no parsing, no I/O.
``TASKSAGA_CLOCK_JUMP`` (``<offset_ms>[@<after_s>]``) shifts this process's wall clock by
``offset_ms`` once ``after_s`` seconds have passed since start-up (0 by default): the chaos
suite's clock jump of one process (R15). Bad values stop the process at start-up, naming the
variable, rather than silently injecting nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

FAULT_POINTS_VAR = "TASKSAGA_FAULT_POINTS"
CLOCK_JUMP_VAR = "TASKSAGA_CLOCK_JUMP"

# The points the services call; a typo in the variable must fail loudly, not inject nothing.
POINTS = frozenset({
    # orchestrator: the batch's events, outbox rows and inbox rows committed; nothing of it
    # published and the consumed offsets not stored yet
    "after_append_before_produce",
    # orchestrator: inside the batch's transaction, events appended but not committed
    "after_append_before_commit",
    # outbox relay: the broker acknowledged the batch; its outbox rows not deleted yet (and
    # the consumed messages that caused them possibly not committed either)
    "after_produce_before_delete",
})
ACTIONS = frozenset({"kill", "exit"})


class FaultConfigError(ValueError):
    """TASKSAGA_FAULT_POINTS or TASKSAGA_CLOCK_JUMP cannot be understood."""


@dataclass(frozen=True)
class Fault:
    point: str
    action: str
    on_hit: int


def parse_faults(spec: str) -> dict[str, Fault]:
    faults: dict[str, Fault] = {}
    for raw in (part.strip() for part in spec.split(",")):
        if not raw:
            continue
        point, sep, rest = raw.partition(":")
        action, at, hit_text = rest.partition("@")
        if not sep or point not in POINTS:
            raise FaultConfigError(
                f"{FAULT_POINTS_VAR}: {raw!r} does not name a fault point; known points: "
                f"{', '.join(sorted(POINTS))} (format point:action[@hit])")
        if action not in ACTIONS:
            raise FaultConfigError(
                f"{FAULT_POINTS_VAR}: {raw!r} has action {action!r}; use one of "
                f"{', '.join(sorted(ACTIONS))}")
        try:
            on_hit = int(hit_text) if at else 1
        except ValueError:
            raise FaultConfigError(
                f"{FAULT_POINTS_VAR}: {raw!r}: the hit after @ must be a whole number") from None
        if on_hit < 1:
            raise FaultConfigError(f"{FAULT_POINTS_VAR}: {raw!r}: the hit counts from 1")
        faults[point] = Fault(point, action, on_hit)
    return faults


def parse_clock_jump(spec: str) -> tuple[int, float]:
    """``offset_ms[@after_s]`` -> (offset_ms, after_s)."""
    offset_text, at, after_text = spec.strip().partition("@")
    try:
        return int(offset_text), float(after_text) if at else 0.0
    except ValueError:
        raise FaultConfigError(
            f"{CLOCK_JUMP_VAR}={spec!r}: expected <offset_ms>[@<after_s>], e.g. 3600000@5"
        ) from None


_ARMED: Mapping[str, Fault] = parse_faults(os.environ.get(FAULT_POINTS_VAR, ""))
_hits: dict[str, int] = {}
_hits_lock = threading.Lock()
_JUMP_MS, _JUMP_AFTER_S = (parse_clock_jump(os.environ[CLOCK_JUMP_VAR])
                           if os.environ.get(CLOCK_JUMP_VAR) else (0, 0.0))
_JUMP_AT = time.monotonic() + _JUMP_AFTER_S


def hit(point: str) -> None:
    """Called by a service at ``point``; dies there when the point is armed for this hit."""
    fault = _ARMED.get(point)
    if fault is None:
        return
    with _hits_lock:
        count = _hits[point] = _hits.get(point, 0) + 1
    if count != fault.on_hit:
        return
    sys.stderr.write(f"fault injection: {fault.action} at {point} (hit {count})\n")
    sys.stderr.flush()
    if fault.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(137)


def clock_offset_ms() -> int:
    """The injected shift of this process's wall clock; 0 unless TASKSAGA_CLOCK_JUMP is set."""
    if _JUMP_MS == 0 or time.monotonic() < _JUMP_AT:
        return 0
    return _JUMP_MS
