"""What a watcher receives, built from log events and heartbeats; SSE framing. Pure.

A message from the log carries its event's version (the stream position in Postgres): it is
the SSE ``id``, so ``Last-Event-ID`` resumes from the log. A progress message (from a
heartbeat, which is not in the log) carries no id: resuming never depends on it, and the
browser's last id stays the last event's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from tasksaga.adapters.wire import Envelope
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.audit import describe, step_of

EVENT = "event"
PROGRESS = "progress"
END = "end"
DROPPED = "dropped"

TERMINAL_STATUS: dict[type[Any], str] = {
    ev.TaskCompleted: "Completed",
    ev.TaskFailed: "Failed",
    ev.TaskCancelled: "Cancelled",
    ev.TaskCompensationFailed: "CompensationFailed",
    ev.TaskNeedsAttention: "NeedsAttention",
    ev.TaskResolved: "Resolved",
    ev.WorkflowDiverged: "NeedsAttention",  # a workflow suspended for non-determinism
}


@dataclass(frozen=True)
class LiveMessage:
    kind: str  # EVENT, PROGRESS, END or DROPPED
    task_id: str
    data: dict[str, Any]
    version: int | None = None  # EVENT only: the event's version in the task's stream
    occurred_at_ms: int = 0
    terminal: bool = False

    # Encoded once, however many watchers of the task it is sent to.
    @cached_property
    def json(self) -> str:
        return json.dumps(self.data, separators=(",", ":"), ensure_ascii=True)

    @cached_property
    def frame(self) -> str:
        head = f"id: {self.version}\n" if self.version is not None else ""
        return f"{head}event: {self.kind}\ndata: {self.json}\n\n"


def iso_utc(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def event_message(envelope: Envelope) -> LiveMessage:
    """One event of the log, as watchers see it (the audit trail's line, not its payload:
    requests, responses and step data stay behind GET /tasks/{id})."""
    event = envelope.payload
    status = TERMINAL_STATUS.get(type(event))
    data: dict[str, Any] = {
        "type": EVENT,
        "task_id": envelope.task_id,
        "version": envelope.version,
        "event_type": type(event).__name__,
        "step": step_of(event),
        "attempt": getattr(event, "attempt", None),
        "summary": describe(event, None, envelope.occurred_at_ms),
        "occurred_at": iso_utc(envelope.occurred_at_ms),
        "occurred_at_ms": envelope.occurred_at_ms,
        "terminal": status is not None,
        "status": status,
    }
    return LiveMessage(EVENT, envelope.task_id, data, envelope.version,
                       envelope.occurred_at_ms, status is not None)


def progress_message(envelope: Envelope) -> LiveMessage | None:
    """A heartbeat that reports progress; None for a bare liveness beat (nothing to show)."""
    beat = envelope.payload
    if not isinstance(beat, msg.StepHeartbeat):
        return None
    if beat.progress is None and beat.message is None:
        return None
    return LiveMessage(PROGRESS, beat.task_id, {
        "type": PROGRESS, "task_id": beat.task_id, "step": beat.step, "attempt": beat.attempt,
        "progress": beat.progress, "message": beat.message,
        "reported_at": iso_utc(envelope.occurred_at_ms),
        "reported_at_ms": envelope.occurred_at_ms,
    }, occurred_at_ms=envelope.occurred_at_ms)


def stored_progress(task_id: str, step: str, attempt: int, progress: float | None,
                    message: str | None, reported_at_ms: int) -> LiveMessage:
    """The last progress a step reported, as recorded by the orchestrator (sent on connect)."""
    return LiveMessage(PROGRESS, task_id, {
        "type": PROGRESS, "task_id": task_id, "step": step, "attempt": attempt,
        "progress": progress, "message": message, "reported_at": iso_utc(reported_at_ms),
        "reported_at_ms": reported_at_ms,
    }, occurred_at_ms=reported_at_ms)


def end_message(task_id: str, last: LiveMessage) -> LiveMessage:
    return LiveMessage(END, task_id, {"type": END, "task_id": task_id,
                                      "status": last.data.get("status"),
                                      "version": last.version})


def dropped_message(task_id: str, reason: str, last_version: int) -> LiveMessage:
    """Sent to a watcher the fan-out gave up on; it may resume from ``last_version``."""
    return LiveMessage(DROPPED, task_id, {"type": DROPPED, "task_id": task_id,
                                          "reason": reason, "resume_after": last_version})


def to_json(message: LiveMessage) -> str:
    return message.json


def sse_frame(message: LiveMessage) -> str:
    """One SSE message: ``id`` only for log events; the JSON is one line (ASCII escapes)."""
    return message.frame


def sse_comment(text: str) -> str:
    """A keep-alive: a comment line, ignored by every SSE client."""
    return f": {text}\n\n"


def sse_retry(milliseconds: int) -> str:
    return f"retry: {milliseconds}\n\n"


class BadResumePoint(ValueError):
    pass


def resume_after(last_event_id: str | None, after_version: int | None) -> int:
    """The version after which to stream: ``Last-Event-ID`` (set by an EventSource when it
    reconnects) wins over ``after_version`` (a new connection that resumes)."""
    if last_event_id is not None and last_event_id.strip():
        text = last_event_id.strip()
        if not text.isdigit() or len(text) > 10:
            raise BadResumePoint(f"Last-Event-ID must be an event version (a non-negative "
                                 f"integer) sent by this stream, got {text[:20]!r}")
        return int(text)
    if after_version is not None:
        if after_version < 0:
            raise BadResumePoint("after_version must be 0 or more")
        return after_version
    return 0
