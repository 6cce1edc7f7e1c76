"""Which step commands are not worth running, decided from what this worker has seen.

A command is skipped when its step's timeout has passed (the orchestrator has timed the attempt
out, or is about to: its result would be stale), when a newer attempt of the same step has
already arrived (the orchestrator dispatched it because this one failed or timed out), or when
this worker already runs or answered the very same command (a redelivery after a rebalance,
a duplicate from an outbox relay that crashed between publish and delete, or a copy an
operator's redrive resent: another message id, the same kind, task, step and attempt).

The records are bounded (oldest forgotten first): forgetting only costs a re-execution, which
the orchestrator's inbox deduplicates by the result's message id.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from tasksaga.core import messages as msg

Command = msg.ExecuteStep | msg.CompensateStep
_AttemptKey = tuple[str, str, str, int]  # kind, task id, step, surplus attempt
_CommandKey = tuple[_AttemptKey, int]  # and the attempt: one dispatch, whatever its copy


def _attempt_key(command: Command) -> _AttemptKey:
    if isinstance(command, msg.ExecuteStep):
        return ("execute", command.task_id, command.step, 0)
    return ("compensate", command.task_id, command.step, command.surplus_attempt)


class CommandGuard:
    REMEMBERED = 20_000
    # ``timeout_at_ms`` is on the orchestrators' clock (the database's), this worker compares
    # it with its own: a command is skipped only when expired by more than any plausible skew.
    # Skipping wrongly would starve a step; running an expired one only costs a stale result.
    CLOCK_SKEW_MS = 60_000

    def __init__(self, now_ms: Callable[[], int], clock_skew_ms: int = CLOCK_SKEW_MS) -> None:
        self._now_ms = now_ms
        self._skew_ms = clock_skew_ms
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, bool] = OrderedDict()  # message id -> answered
        self._latest: OrderedDict[_AttemptKey, int] = OrderedDict()
        self._copies: OrderedDict[_CommandKey, str] = OrderedDict()  # -> first copy's id

    def admit(self, message_id: str, command: Command) -> str | None:
        """Why the command is skipped, or None (then it is recorded as running)."""
        if (isinstance(command, msg.ExecuteStep)
                and 0 < command.timeout_at_ms + self._skew_ms <= self._now_ms()):
            return "its step timed out before it could start"
        key = _attempt_key(command)
        with self._lock:
            answered = self._seen.get(message_id)
            if answered is not None:
                return "already answered" if answered else "already running here"
            first = self._copies.get((key, command.attempt))
            answered = None if first is None else self._seen.get(first)
            if answered is not None:  # a resent copy of a command seen under another id
                return ("a copy of it was already answered" if answered
                        else "a copy of it is already running here")
            latest = self._latest.get(key, 0)
            if command.attempt < latest:
                return f"superseded by attempt {latest}"
            self._latest[key] = command.attempt
            self._latest.move_to_end(key)
            self._seen[message_id] = False
            self._copies[(key, command.attempt)] = message_id
            self._copies.move_to_end((key, command.attempt))
            self._trim()
        return None

    def answered(self, message_id: str) -> None:
        with self._lock:
            self._seen[message_id] = True
            self._seen.move_to_end(message_id)
            self._trim()

    def abandoned(self, message_id: str) -> None:
        """Stopped without an answer (its lease was revoked): a redelivery may run it."""
        with self._lock:
            self._seen.pop(message_id, None)

    def _trim(self) -> None:
        while len(self._seen) > self.REMEMBERED:
            self._seen.popitem(last=False)
        while len(self._latest) > self.REMEMBERED:
            self._latest.popitem(last=False)
        while len(self._copies) > self.REMEMBERED:
            self._copies.popitem(last=False)
