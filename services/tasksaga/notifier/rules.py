"""The notifier's rules: what an event asks for, what is POSTed, when to try again.

Pure: no I/O, no clock, no randomness of its own. Times and random fractions are arguments,
so tests pin them; ``consumer.py`` and ``sender.py`` are the shells around these functions.

Notification body (JSON object, UTF-8, ASCII-only escapes; every key always present, ``null``
where it does not apply — receivers can rely on the shape):

``delivery_id``  the delivery's id, also in ``X-Tasksaga-Delivery``; the same on every retry
``task_id``, ``task_type``
``event_type``   TaskCompleted, TaskFailed, TaskCancelled, TaskCompensationFailed,
                 TaskNeedsAttention, TaskResolved (terminal: sent at most once per task,
                 unless an operator retry resumes it) or StepCompleted, StepSkipped,
                 CompensationStarted, StepCompensated (progress)
``version``      the event's position in the task's stream (1-based): order by it, since
                 deliveries may arrive out of order after retries
``occurred_at``  ISO-8601 UTC with milliseconds, e.g. ``2024-05-01T12:00:00.250Z``
``status``       the task's status after the event: Completed, Failed, Cancelled,
                 CompensationFailed, NeedsAttention, Resolved, Running or Compensating
``step``         the step the event is about (StepCompleted, StepSkipped, StepCompensated,
                 TaskCompensationFailed, TaskNeedsAttention: the step that failed, null
                 when the response builder failed), else null
``response``     TaskCompleted only: the task's response, parsed JSON (the raw string if it
                 is not valid JSON), else null
``reason``       TaskFailed, TaskCancelled, TaskResolved (the operator's), StepSkipped,
                 CompensationStarted, else null
``error``        TaskCompensationFailed and TaskNeedsAttention: ``{"type": ..., "message":
                 ...}``, else null
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from tasksaga.adapters.wire import CALLBACK_HEADER, EVENT_TYPE_HEADER, Envelope
from tasksaga.core import events as ev
from tasksaga.core.retry import Backoff, RetryPolicy
from tasksaga.core.state import TaskStatus
from tasksaga.notifier.signature import sign, sign_v2

# -- which events are notified --------------------------------------------------------------------

TERMINAL_STATUS: dict[type[Any], TaskStatus] = {
    ev.TaskCompleted: TaskStatus.COMPLETED,
    ev.TaskFailed: TaskStatus.FAILED,
    ev.TaskCancelled: TaskStatus.CANCELLED,
    ev.TaskCompensationFailed: TaskStatus.COMPENSATION_FAILED,
    ev.TaskNeedsAttention: TaskStatus.NEEDS_ATTENTION,
    ev.TaskResolved: TaskStatus.RESOLVED,
    # A workflow suspended for non-determinism waits for an operator too (docs/workflows.md).
    ev.WorkflowDiverged: TaskStatus.NEEDS_ATTENTION,
}

# Progress worth telling a caller about; dispatches, attempt failures and retries are internal
# detail (and would multiply the traffic) — they stay in the event log.
PROGRESS_STATUS: dict[type[Any], TaskStatus] = {
    ev.StepCompleted: TaskStatus.RUNNING,
    ev.StepSkipped: TaskStatus.RUNNING,
    ev.CompensationStarted: TaskStatus.COMPENSATING,
    ev.StepCompensated: TaskStatus.COMPENSATING,
}


def is_terminal(event: object) -> bool:
    return type(event) in TERMINAL_STATUS


def is_notifiable(event: object) -> bool:
    return type(event) in TERMINAL_STATUS or type(event) in PROGRESS_STATUS


def status_after(event: object) -> TaskStatus | None:
    """The task's status once ``event`` happened, for notifiable events; else None."""
    return TERMINAL_STATUS.get(type(event)) or PROGRESS_STATUS.get(type(event))


_ACTED_ON = frozenset([ev.TaskSubmitted.__name__, *(t.__name__ for t in TERMINAL_STATUS),
                       *(t.__name__ for t in PROGRESS_STATUS)])


def nothing_to_do(headers: Mapping[str, str]) -> bool:
    """True when a task-events record's headers (adapters/wire.py) show there is nothing to
    do for it: its task has no callback URL, or its event is neither a submission nor
    notifiable. Records without those headers (written before them) are decoded."""
    if headers.get(CALLBACK_HEADER) == "0":
        return True
    event_type = headers.get(EVENT_TYPE_HEADER)
    return event_type is not None and event_type not in _ACTED_ON


def valid_callback_url(url: str) -> bool:
    """An absolute http(s) URL with a host. Anything else could never be POSTed to."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


# -- what the consumer does with one event ------------------------------------------------------


@dataclass(frozen=True)
class Subscribe:
    """Remember the task's callback URL (and its tenant: deliveries are tenant-scoped)."""

    task_id: str
    url: str
    tenant: str = "default"


@dataclass(frozen=True)
class Notify:
    """Queue one delivery, if (and only if) the task has a subscription."""

    delivery_id: str
    task_id: str
    event_type: str
    body: bytes


@dataclass(frozen=True)
class Ignore:
    """Nothing to do; a non-empty ``reason`` is worth a warning in the log."""

    reason: str = ""


@dataclass(frozen=True)
class Refuse:
    """The record can never be handled here (it is not a task event): dead-letter it."""

    reason: str


Action = Subscribe | Notify | Ignore | Refuse


def plan(envelope: Envelope) -> Action:
    event = envelope.payload
    if not isinstance(event, ev.EVENT_TYPES):
        return Refuse(f"{type(event).__name__} is not a task event: it does not belong on the "
                      "task-events topic")
    if isinstance(event, ev.TaskSubmitted):
        url = (event.callback_url or "").strip()
        if not url:
            return Ignore()
        if not valid_callback_url(url):
            return Ignore(f"task {event.task_id}: callback URL {url!r} is not an http(s) URL")
        return Subscribe(event.task_id, url, event.tenant)
    if not is_notifiable(event):
        return Ignore()
    return Notify(
        # The event's message id is stable across Kafka redeliveries: the queue's primary key.
        delivery_id=envelope.message_id,
        task_id=envelope.task_id,
        event_type=type(event).__name__,
        body=encode_body(notification_body(envelope)),
    )


def iso_utc(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def notification_body(envelope: Envelope) -> dict[str, Any]:
    """The JSON object POSTed for a notifiable event (shape documented above)."""
    event = envelope.payload
    status = status_after(event)
    if status is None:
        raise ValueError(f"{type(event).__name__} is not a notifiable event")
    step = getattr(event, "step", None) or None
    reason = getattr(event, "reason", None)
    response = _parse_json(event.response_json) if isinstance(event, ev.TaskCompleted) else None
    error = (
        {"type": event.error_type, "message": event.error_message}
        if isinstance(event, ev.TaskCompensationFailed | ev.TaskNeedsAttention)
        else None
    )
    if isinstance(event, ev.WorkflowDiverged):
        error = {"type": "NonDeterminism",
                 "message": f"await #{event.command_index} ({event.location}): the history "
                            f"records {event.expected}, the code issued {event.got}"}
    return {
        "delivery_id": envelope.message_id,
        "task_id": envelope.task_id,
        "task_type": envelope.task_type,
        "event_type": type(event).__name__,
        "version": envelope.version,
        "occurred_at": iso_utc(envelope.occurred_at_ms),
        "status": status.value,
        "step": step,
        "response": response,
        "reason": reason,
        "error": error,
    }


def encode_body(body: dict[str, Any]) -> bytes:
    # Encoded once, stored, and sent byte for byte on every attempt: the signature covers
    # these exact bytes, so they must never be re-serialized.
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")


# -- delivery: headers, success, retries ---------------------------------------------------------


def delivery_headers(
    secret: str | bytes, delivery_id: str, timestamp_s: int, body: bytes
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Tasksaga-Delivery": delivery_id,
        "X-Tasksaga-Timestamp": str(timestamp_s),
        "X-Tasksaga-Signature": sign(secret, timestamp_s, body),
        "X-Tasksaga-Signature-V2": sign_v2(secret, delivery_id, timestamp_s, body),
    }


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRYING = "retrying"
    GAVE_UP = "gave_up"


def webhook_retry_policy(max_attempts: int, base_ms: int, cap_ms: int) -> RetryPolicy:
    """Exponential backoff with full jitter: the retries of many deliveries that failed
    together (a receiver outage) spread out instead of coming back in lock-step."""
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    return RetryPolicy(max_retries=max_attempts - 1, backoff=Backoff.EXPONENTIAL,
                       delay_ms=base_ms, max_delay_ms=cap_ms, jitter=1.0)


def succeeded(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    next_attempt_at_ms: int | None = None  # set when the outcome is RETRYING


def judge(
    policy: RetryPolicy,
    attempt: int,
    status_code: int | None,
    now_ms: int,
    random_fraction: float,
    retryable: bool = True,
) -> Verdict:
    """What follows attempt ``attempt`` (1-based) that got ``status_code`` (None: no response).

    Any 2xx is delivered. Everything else — other statuses (redirects are not followed),
    timeouts, connection errors — is retried as long as the policy allows, unless the
    attempt is not ``retryable`` (the URL guard refused the receiver: asking again cannot
    make an internal address public).
    """
    if succeeded(status_code):
        return Verdict(Outcome.DELIVERED)
    if not retryable or not policy.allows_retry(attempt, f"HTTP {status_code}"):
        return Verdict(Outcome.GAVE_UP)
    return Verdict(Outcome.RETRYING,
                   now_ms + policy.delay_before(attempt + 1, random_fraction))
