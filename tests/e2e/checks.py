"""Invariants of the event log that every end-to-end run must keep."""

from __future__ import annotations

from collections import Counter

import psycopg

from localrun import local_payload_cipher
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.core import events as ev

TERMINAL_EVENTS = (ev.TaskCompleted, ev.TaskFailed, ev.TaskCancelled, ev.TaskCompensationFailed,
                   ev.TaskNeedsAttention)
# A late success of an attempt the task no longer waited for is recorded, and undone, even
# after the task ended: its effect exists and must be compensated (issue 8, defect 7).
AFTER_TERMINAL = (ev.StepSurplusSucceeded, ev.StepSurplusCompensated,
                  ev.StepSurplusCompensationFailed)


def log_problems(database_url: str, task_ids: list[str]) -> list[str]:
    """Gaps, duplicated transitions, missing or repeated terminal events; [] when sound."""
    codec = AvroCodec(cipher=local_payload_cipher())
    problems: list[str] = []
    with psycopg.connect(database_url) as conn:
        for task_id in task_ids:
            rows = conn.execute("SELECT version, payload FROM events WHERE stream_id = %s"
                                " ORDER BY version", (task_id,)).fetchall()
            versions = [r[0] for r in rows]
            if versions != list(range(1, len(rows) + 1)):
                problems.append(f"{task_id}: versions {versions}")
            events = [codec.decode(bytes(r[1])).payload for r in rows]
            transitions = Counter(
                # A retry is keyed by the attempt it schedules: two retries of one step are
                # two transitions, not one repeated.
                (type(e).__name__, getattr(e, "step", None),
                 getattr(e, "attempt", getattr(e, "next_attempt", None)))
                for e in events
            )
            duplicated = [t for t, n in transitions.items() if n > 1]
            if duplicated:
                problems.append(f"{task_id}: duplicated transitions {duplicated}")
            terminal = [e for e in events if isinstance(e, TERMINAL_EVENTS)]
            after = events[events.index(terminal[0]) + 1:] if len(terminal) == 1 else []
            if len(terminal) != 1 or not all(isinstance(e, AFTER_TERMINAL) for e in after):
                problems.append(f"{task_id}: terminal events {terminal}, then "
                                f"{[type(e).__name__ for e in after]}")
    return problems
