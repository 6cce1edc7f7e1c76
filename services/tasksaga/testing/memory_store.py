"""The event store in memory (the ``EventStore`` port): the orchestrator runs on it unchanged.

A transaction works on a copy of the store and replaces it on commit, so an exception (a
concurrency conflict, a bug in a test) leaves nothing behind, as a Postgres rollback does. One
lock serialises transactions, which is what the Postgres store's per-stream advisory locks
amount to for a single process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from tasksaga.core import messages as msg
from tasksaga.core.envelope import Envelope
from tasksaga.core.ports import Clock, ConcurrencyConflict, OutboxRecord
from tasksaga.core.shards import ShardMap
from tasksaga.core.state import TaskState, evolve
from tasksaga.testing.clock import ManualClock

TimerKey = tuple[str, str, str, int]  # task id, kind, step, attempt


@dataclass(frozen=True)
class Progress:
    attempt: int
    progress: float | None
    message: str | None


@dataclass
class _Tables:
    streams: dict[str, list[Envelope]] = field(default_factory=dict)
    event_ids: set[str] = field(default_factory=set)
    processed: set[tuple[str, str]] = field(default_factory=set)
    outbox: list[tuple[int, OutboxRecord]] = field(default_factory=list)  # (row id, record)
    timers: dict[TimerKey, tuple[int, str]] = field(default_factory=dict)  # fire at, task type
    progress: dict[tuple[str, str], Progress] = field(default_factory=dict)
    outbox_ids: int = 0  # the last outbox row id handed out

    def copy(self) -> _Tables:
        # Streams are replaced, never appended to in place, so sharing their lists is safe.
        return _Tables(dict(self.streams), set(self.event_ids), set(self.processed),
                       list(self.outbox), dict(self.timers), dict(self.progress),
                       self.outbox_ids)


class InMemoryTransaction:
    def __init__(self, tables: _Tables, clock: Clock, shards: ShardMap, shard: str) -> None:
        self._t = tables
        self._clock = clock
        self._shards = shards
        self._shard = shard
        self.enqueued: list[tuple[int, OutboxRecord]] = []

    def _check(self, task_id: str) -> None:
        self._shards.check(self._shard, task_id)

    def claim_message(self, consumer: str, message_id: str) -> bool:
        if (consumer, message_id) in self._t.processed:
            return False
        self._t.processed.add((consumer, message_id))
        return True

    def lock_stream(self, task_id: str, wait: bool = True) -> int | None:
        self._check(task_id)
        # The whole store is this transaction's until it ends: the lock is always ours.
        return len(self._t.streams.get(task_id, ()))

    def claim_messages(self, consumer: str, message_ids: Sequence[str]) -> set[str]:
        return {m for m in dict.fromkeys(message_ids) if self.claim_message(consumer, m)}

    def lock_streams(self, task_ids: Iterable[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for task_id in sorted(set(task_ids)):
            version = self.lock_stream(task_id)
            assert version is not None  # the whole store is this transaction's
            found[task_id] = version
        return found

    def load_events(self, task_id: str) -> list[Envelope]:
        self._check(task_id)
        return list(self._t.streams.get(task_id, ()))

    def load_state(self, task_id: str) -> TaskState:
        self._check(task_id)
        state = TaskState()
        for envelope in self._t.streams.get(task_id, ()):
            state = evolve(state, envelope.payload)
        return state

    def append(self, task_id: str, expected_version: int,
               envelopes: Sequence[Envelope], encoded: Sequence[bytes] | None = None) -> None:
        self._check(task_id)  # it keeps envelopes, not bytes: ``encoded`` is not needed
        for offset, envelope in enumerate(envelopes, start=1):
            if envelope.version != expected_version + offset:
                raise ValueError("event versions must follow the expected version without gaps")
        if not envelopes:
            return
        stream = self._t.streams.get(task_id, [])
        if len(stream) != expected_version:
            raise ConcurrencyConflict(f"stream {task_id} moved past version {expected_version}")
        ids = [e.message_id for e in envelopes]
        if len(set(ids)) != len(ids) or self._t.event_ids.intersection(ids):
            raise ConcurrencyConflict(f"stream {task_id}: an event with one of the message ids"
                                      f" {ids} was already appended")
        self._t.streams[task_id] = [*stream, *envelopes]
        self._t.event_ids.update(ids)

    def lock_and_claim(self, task_ids: Iterable[str], consumer: str,
                       message_ids: Sequence[str]) -> tuple[dict[str, int], set[str]]:
        return self.lock_streams(task_ids), self.claim_messages(consumer, message_ids)

    def delete_published(self, row_ids: Sequence[int]) -> None:
        gone = set(row_ids)
        self._t.outbox = [(i, r) for i, r in self._t.outbox if i not in gone]

    def enqueue(self, records: Sequence[OutboxRecord]) -> None:
        for record in records:
            self._t.outbox_ids += 1
            self._t.outbox.append((self._t.outbox_ids, record))
            self.enqueued.append((self._t.outbox_ids, record))

    def schedule(self, task_type: str, timers: Sequence[msg.ScheduleTimer]) -> None:
        for scheduled in timers:
            self._check(scheduled.timer.task_id)
            self._t.timers[_key(scheduled.timer)] = (scheduled.fire_at_ms, task_type)

    def postpone_timer(self, timer: msg.TimerFired, fire_at_ms: int) -> None:
        self._check(timer.task_id)
        key = _key(timer)
        if key in self._t.timers:
            self._t.timers[key] = (fire_at_ms, self._t.timers[key][1])

    def delete_timer(self, timer: msg.TimerFired) -> None:
        self._check(timer.task_id)
        self._t.timers.pop(_key(timer), None)

    def database_now_ms(self) -> int:
        return self._clock.now_ms()

    def claim_due_timers(self, now_ms: int, limit: int,
                         task_types: Sequence[str]) -> list[msg.TimerFired]:
        due = sorted(
            ((at, index, key) for index, (key, (at, task_type)) in enumerate(
                self._t.timers.items()) if at <= now_ms and task_type in task_types
            and self._shards.shard_of(key[0]) == self._shard),
        )
        return [_timer(key) for _, _, key in due[:limit]]

    def record_progress(self, task_id: str, step: str, attempt: int, progress: float | None,
                        message: str | None) -> None:
        self._check(task_id)
        self._t.progress[(task_id, step)] = Progress(attempt, progress, message)


class InMemoryEventStore:
    """One set of tables; with a ``shards`` map, a transaction is on one shard as the
    Postgres store's are (it claims only its shard's timers; another shard's task raises
    WrongShard), so routing is tested without several databases."""

    def __init__(self, clock: Clock | None = None, shards: ShardMap | None = None) -> None:
        self.clock: Clock = clock if clock is not None else ManualClock()
        self.shards = shards if shards is not None else ShardMap.single()
        self._lock = threading.Lock()
        self._owner: int | None = None  # the thread inside a transaction
        self._tables = _Tables()

    def shard_names(self) -> Sequence[str]:
        return self.shards.shards

    def shard_of(self, task_id: str) -> str:
        return self.shards.shard_of(task_id)

    @contextmanager
    def transaction(self, shard: str | None = None) -> Iterator[InMemoryTransaction]:
        name = self.shards.home if shard is None else shard
        if name not in self.shards.shards:
            raise ValueError(f"no shard {name!r}; shards: {', '.join(self.shards.shards)}")
        if self._owner == threading.get_ident():
            # Postgres would give the inner block a second connection and, for the same
            # stream, a lock wait forever; fail at once instead of hanging the test.
            raise RuntimeError("a transaction was opened inside another on the same thread")
        with self._lock:
            self._owner = threading.get_ident()
            try:
                working = self._tables.copy()
                yield InMemoryTransaction(working, self.clock, self.shards, name)
                self._tables = working  # reached only when the block raised nothing: commit
            finally:
                self._owner = None

    def next_timer_delay_ms(self, task_types: Sequence[str]) -> int | None:
        with self._lock:
            due = [at for at, task_type in self._tables.timers.values()
                   if task_type in task_types]
        return min(due) - self.clock.now_ms() if due else None

    # -- for the test harness and assertions (what a relay or a query would read) -----------

    def take_outbox(self) -> list[OutboxRecord]:
        """The committed outbox records not yet taken, in commit order (the relay's read)."""
        with self._lock:
            rows, self._tables.outbox = self._tables.outbox, []
        return [record for _, record in rows]

    def events(self, task_id: str) -> list[Envelope]:
        with self._lock:
            return list(self._tables.streams.get(task_id, ()))

    def stream_ids(self) -> list[str]:
        with self._lock:
            return list(self._tables.streams)

    def timers(self) -> list[tuple[int, msg.TimerFired]]:
        """Pending timers: when each is due, and what fires, earliest first."""
        with self._lock:
            items = list(self._tables.timers.items())
        return sorted(((at, _timer(key)) for key, (at, _) in items), key=lambda t: t[0])

    def progress(self, task_id: str, step: str) -> Progress | None:
        with self._lock:
            return self._tables.progress.get((task_id, step))


def _key(timer: msg.TimerFired) -> TimerKey:
    return (timer.task_id, timer.kind.value, timer.step, timer.attempt)


def _timer(key: TimerKey) -> msg.TimerFired:
    return msg.TimerFired(key[0], msg.TimerKind(key[1]), key[2], key[3])
