"""The envelope around every payload that travels or is stored: identity (message id), the
tracing of cause (correlation and causation ids) and the task it belongs to.

It lives in the core, beside the ports that carry it, so an adapter of the event store or of
the bus (the Postgres and Kafka ones, or the in-memory fakes of ``tasksaga.testing``) speaks
the same type; ``tasksaga.adapters.wire`` re-exports it for the shells.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Envelope:
    payload: Any
    message_id: str
    task_id: str
    correlation_id: str
    causation_id: str | None
    occurred_at_ms: int
    task_type: str = ""
    version: int = 0
