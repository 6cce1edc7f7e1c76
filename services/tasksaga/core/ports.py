"""Ports the core and the shells talk through. Adapters implement them; the core never imports
an adapter.

Each port has a real adapter (MinIO, Postgres, Kafka, the system clock) and an in-memory one in
``tasksaga.testing``; one contract suite per port (tests/port_contracts) runs against both, so
the fakes a user's saga is tested with behave as production does where it matters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, Protocol

from tasksaga.core import messages as msg
from tasksaga.core.envelope import Envelope
from tasksaga.core.shards import WrongShard as WrongShard  # raised through the port
from tasksaga.core.state import TaskState

Headers = Sequence[tuple[str, bytes]]


class ObjectStore(Protocol):
    """Streaming object storage (MinIO/S3). Objects are never held whole in memory."""

    def put_stream(
        self, bucket: str, key: str, stream: IO[bytes], content_type: str = ...
    ) -> int: ...

    def open_stream(self, bucket: str, key: str) -> Iterator[bytes]: ...

    def delete(self, bucket: str, key: str) -> None: ...

    def exists(self, bucket: str, key: str) -> bool: ...

    def presigned_get_url(self, bucket: str, key: str, expires_s: int = ...) -> str:
        """A time-limited URL for tools that read over HTTP themselves (ffmpeg)."""
        ...

    def copy(self, bucket: str, source_key: str, target_key: str) -> None:
        """Copy an object within ``bucket`` (server-side: the bytes never reach the caller)."""
        ...


class ArtifactRefs(Protocol):
    """Who holds each content-addressed artifact (tasksaga.worker.artifacts). Holding and
    releasing one SHA-256 are serialized, so the content is deleted only while nobody holds
    it, and never while someone is about to."""

    def hold(self, sha256: str, holder: str, ensure_stored: Callable[[], None]) -> None:
        """Record ``holder``'s reference (again: no change) and run ``ensure_stored`` (copy
        the content in place if it is not) while no release of ``sha256`` can run."""
        ...

    def release(self, sha256: str, holder: str, delete_stored: Callable[[], None]) -> int:
        """Drop ``holder``'s reference (none: no change); with none left, run
        ``delete_stored`` under the same serialization. Returns the references left."""
        ...


class CancellationSignal(Protocol):
    """Set when the task was cancelled or the step's result is no longer wanted."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class Clock(Protocol):
    """Milliseconds since the epoch (the system clock, or a test's clock that skips ahead)."""

    def now_ms(self) -> int: ...


class Sending(Protocol):
    """A record sent without waiting: its outcome, once the broker answered."""

    @property
    def error(self) -> Exception | None:
        """Why it was not delivered, once settled; None while pending or after success."""
        ...

    def wait(self, timeout: float) -> bool:
        """True once settled (acknowledged or refused) within ``timeout`` seconds."""
        ...


class Bus(Protocol):
    """Publishes encoded envelopes (commands, results, events: the codec's bytes) to topics.

    Records with the same key on the same topic are read in the order they were sent. A record
    that is not acknowledged raises the adapter's ``DeliveryFailed``, whose ``too_large`` says
    whether sending it again can ever succeed.
    """

    def send_and_wait(self, topic: str, key: bytes | None, value: bytes, headers: Headers = ...,
                      timeout_s: float | None = ...) -> None:
        """Return once the record is acknowledged."""
        ...

    def produce_nowait(self, topic: str, key: bytes | None, value: bytes,
                       headers: Headers = ...) -> Sending:
        """Send without waiting (heartbeats; a chain's results): the returned delivery tells."""
        ...


class ConcurrencyConflict(Exception):
    """Another writer appended to the stream first (a concurrent or zombie owner)."""


@dataclass(frozen=True)
class OutboxRecord:
    """A record to publish once the transaction that wrote it commits (transactional outbox)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = ()


class EventStoreTransaction(Protocol):
    """Everything one processed message writes, committed together or not at all: its inbox
    record, the task's new events, the outbox records and the timers."""

    def claim_message(self, consumer: str, message_id: str) -> bool:
        """Record the message as processed; False when it already was (a redelivery)."""
        ...

    def lock_stream(self, task_id: str, wait: bool = ...) -> int | None:
        """Serialise the task's writers until commit; the stream's version (None when ``wait``
        is False and another transaction holds it)."""
        ...

    def claim_messages(self, consumer: str, message_ids: Sequence[str]) -> set[str]:
        """Claim many at once (a batch's); the ids claimed now, not processed before."""
        ...

    def lock_streams(self, task_ids: Iterable[str]) -> dict[str, int]:
        """Lock many streams at once, in a fixed order (no two batches wait on each other in
        a cycle); each stream's version."""
        ...

    def lock_and_claim(self, task_ids: Iterable[str], consumer: str,
                       message_ids: Sequence[str]) -> tuple[dict[str, int], set[str]]:
        """A batch's start: ``lock_streams`` then ``claim_messages`` (one round trip where
        the store can). The first ``database_now_ms`` after it may be read with it."""
        ...

    def delete_published(self, row_ids: Sequence[int]) -> None:
        """Delete outbox rows (of earlier transactions) whose records Kafka acknowledged,
        with this transaction's writes: its commit settles them."""
        ...

    def load_events(self, task_id: str) -> list[Envelope]: ...

    def load_state(self, task_id: str) -> TaskState: ...

    def append(self, task_id: str, expected_version: int,
               envelopes: Sequence[Envelope], encoded: Sequence[bytes] | None = None) -> None:
        """Versions must follow ``expected_version`` without gaps (ValueError); a stream that
        moved past it raises ConcurrencyConflict. ``encoded``: the envelopes' bytes, when the
        caller has them already (a store that keeps bytes writes these)."""
        ...

    def enqueue(self, records: Sequence[OutboxRecord]) -> None: ...

    # The outbox records this transaction wrote, each with its row id, in enqueue order;
    # complete once it committed (a publisher sends them then, and deletes rows by id).
    enqueued: list[tuple[int, OutboxRecord]]

    def schedule(self, task_type: str, timers: Sequence[msg.ScheduleTimer]) -> None:
        """One timer per (task, kind, step, attempt): scheduling it again moves it."""
        ...

    def postpone_timer(self, timer: msg.TimerFired, fire_at_ms: int) -> None: ...

    def delete_timer(self, timer: msg.TimerFired) -> None: ...

    def database_now_ms(self) -> int:
        """The store's clock: the one clock timers are scheduled and fired with."""
        ...

    def claim_due_timers(self, now_ms: int, limit: int,
                         task_types: Sequence[str]) -> list[msg.TimerFired]:
        """Timers of these task types due at ``now_ms``, earliest first."""
        ...

    def record_progress(self, task_id: str, step: str, attempt: int, progress: float | None,
                        message: str | None) -> None: ...


class EventStore(Protocol):
    """The append-only log of every task's events, with the inbox, outbox and timers.

    It may be spread over shards (core/shards.py): a task's stream, inbox claims, outbox
    records and timers are on its shard, and a transaction is on one shard; touching another
    shard's task in it raises WrongShard.
    """

    def shard_names(self) -> Sequence[str]:
        """Every shard, the first (which holds the rows of no task) first."""
        ...

    def shard_of(self, task_id: str) -> str: ...

    def transaction(self, shard: str | None = None
                    ) -> AbstractContextManager[EventStoreTransaction]:
        """A transaction on ``shard`` (None: the first)."""
        ...

    def next_timer_delay_ms(self, task_types: Sequence[str]) -> int | None:
        """Milliseconds until the next timer of these task types is due on any shard, by the
        store's clock; None when there is none."""
        ...
