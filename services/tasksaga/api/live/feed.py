"""The API process's one consumer of task events and heartbeats, and its reads of the log.

Every API replica must see every event (its watchers may follow any task), so the consumer
joins no group: it assigns itself every partition of the task-events and step-results topics,
from their ends as of start-up, and commits nothing. It decodes only records whose key (the
task id) has a watcher in this process, and hands the messages to the hub on the event loop.
The step-results topic carries the workers' heartbeats; they are not in the log, so
progress reaches watchers from there (results on it are ignored: their events follow on
task-events).

The consumer assigns its partitions only while streams are open: it starts without them
(ready once its topics are found), and gives them up when no stream was open here for
``idle_s``. An idle consumer still makes the broker answer a fetch for every record of
every task (a fifth of the broker's requests under load, for nothing; 70 fetches a second
in the ten seconds after every start, before it started idle). A stream opened while idle
waits in ``follow`` until the partitions are assigned from their ends, and only then reads
the log: what was published before is in the log, what comes after reaches the feed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from tasksaga.adapters.avro_codec import AvroCodec, DecodeError
from tasksaga.api.live.hub import LiveHub
from tasksaga.api.live.messages import (
    LiveMessage,
    event_message,
    progress_message,
    stored_progress,
)

log = logging.getLogger(__name__)

PARTITION_REFRESH_S = 30.0
BATCH = 500
FOLLOW_TIMEOUT_S = 15.0


class FeedUnavailable(Exception):
    """The feed could not read from its partitions' ends again in time."""


class LiveFeed:
    def __init__(self, bootstrap: str, events_topic: str, heartbeats_topic: str,
                 codec: AvroCodec, hub: LiveHub, client_id: str = "tasksaga-api-live",
                 idle_s: float = 10.0) -> None:
        self._bootstrap = bootstrap
        self._events_topic = events_topic
        self._heartbeats_topic = heartbeats_topic
        self._codec = codec
        self._hub = hub
        self._client_id = client_id
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.failure: str | None = None
        self._idle_s = idle_s
        # Guards ``following``, ``_wanted_at`` and ``_waiters`` between the event loop (a
        # stream asking to follow) and the feed thread (deciding to stop following).
        self._state = threading.Lock()
        self.following = False  # partitions assigned and fetched
        self._wanted_at = time.monotonic()  # the last time a stream asked to follow
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = threading.Event()

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self.failure is None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="live-feed", daemon=True)
        self._thread.start()

    def call_soon(self, callback: Callable[[str], None], argument: str) -> None:
        """Run ``callback(argument)`` on the event loop (from any thread)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback, argument)

    def wait_ready(self, timeout_s: float) -> bool:
        return self._ready.wait(timeout_s)

    async def follow(self) -> None:
        """Return once the feed reads every record published from now on (call it after
        subscribing to the hub, before reading the log): at once while it follows, else
        after it assigned its partitions again from their ends. FeedUnavailable if that
        does not happen within FOLLOW_TIMEOUT_S."""
        with self._state:
            self._wanted_at = time.monotonic()
            if self.following:
                return
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
        self._wake.set()
        try:
            async with asyncio.timeout(FOLLOW_TIMEOUT_S):
                await waiter
        except TimeoutError:
            raise FeedUnavailable(f"the live feed did not resume within {FOLLOW_TIMEOUT_S:g} "
                                  f"s: {self.failure or 'Kafka is slow or unreachable'}"
                                  ) from None

    def _settle_waiters(self, error: Exception | None) -> None:
        with self._state:
            waiters, self._waiters = self._waiters, []
        loop = self._loop
        if not waiters or loop is None or loop.is_closed():
            return
        for waiter in waiters:
            loop.call_soon_threadsafe(_settle, waiter, error)

    def _stop_following_if_idle(self, consumer: Consumer) -> bool:
        """Give up the partitions if no stream is open or asked to follow for ``idle_s``."""
        with self._state:
            if (self._hub.watchers > 0 or self._waiters
                    or time.monotonic() - self._wanted_at < self._idle_s):
                return False
            self.following = False
        consumer.unassign()
        log.info("live feed idle: no stream for %g s, partitions given up", self._idle_s)
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consume()
            except Exception as error:
                self.failure = f"{type(error).__name__}: {error}"
                log.exception("the live feed failed; starting it again")
                with self._state:
                    self.following = False
                self._settle_waiters(FeedUnavailable(f"the live feed failed: {self.failure}"))
            if self._ready.is_set() and self._loop is not None and not self._loop.is_closed():
                # It restarts from the partitions' new ends: what was published meanwhile
                # is not seen live, so its watchers are told to resume (from the log).
                self._loop.call_soon_threadsafe(
                    self._hub.drop_all, "the live feed restarted; resume with Last-Event-ID")
            self._ready.clear()
            self._stop.wait(2.0)

    def _consume(self) -> None:
        consumer = Consumer({
            "bootstrap.servers": self._bootstrap,
            # Never joins this group (partitions are assigned by hand), never commits.
            "group.id": f"{self._client_id}-{uuid.uuid4().hex}",
            "client.id": self._client_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "latest",
            "fetch.wait.max.ms": 50,  # delivery latency: records are small
        })
        try:
            assigned = self._partitions(consumer)  # the topics exist: ready, not following
            self.failure = None
            self._ready.set()
            refreshed = time.monotonic()
            while not self._stop.is_set():
                if not self.following:
                    if not self._waiters:
                        self._wake.wait(0.2)
                        self._wake.clear()
                        consumer.poll(0)  # serves the client's callbacks; nothing to fetch
                        continue
                    assigned = self._follow_from_ends(consumer)
                    refreshed = time.monotonic()
                if self._stop_following_if_idle(consumer):
                    continue
                if time.monotonic() - refreshed > PARTITION_REFRESH_S:
                    assigned |= self._assign_new(consumer, assigned)
                    refreshed = time.monotonic()
                # Block for the first record only, then take what already arrived:
                # consume() alone waits for a full batch or its timeout, on every hop.
                first = consumer.poll(0.2)
                if first is None:
                    continue
                records = [first, *consumer.consume(num_messages=BATCH - 1, timeout=0)]
                messages = [m for m in (self._message(r) for r in records) if m is not None]
                if messages and self._loop is not None:
                    self._hub.publish_threadsafe(self._loop, messages)
        finally:
            consumer.close()

    def _follow_from_ends(self, consumer: Consumer) -> set[tuple[str, int]]:
        assigned = self._assign_from_ends(consumer)
        with self._state:
            self.following = True
            self._wanted_at = time.monotonic()
        self._settle_waiters(None)
        return assigned

    def _partitions(self, consumer: Consumer) -> set[tuple[str, int]]:
        metadata = consumer.list_topics(timeout=10.0)
        found = set()
        for name in (self._events_topic, self._heartbeats_topic):
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None:
                raise RuntimeError(f"topic {name} is not available: "
                                   f"{topic.error if topic else 'missing'}")
            found |= {(name, p) for p in topic.partitions}
        return found

    def _assign_from_ends(self, consumer: Consumer) -> set[tuple[str, int]]:
        """Assign at the explicit high watermarks read now, not at "latest" resolved later:
        a record produced in between would otherwise be skipped, and a watcher that read
        the log just before could miss it."""
        partitions = self._partitions(consumer)
        positions = []
        for topic, partition in sorted(partitions):
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                        timeout=10.0)
            positions.append(TopicPartition(topic, partition, high))
        consumer.assign(positions)
        log.info("live feed reading %d partitions from their ends", len(positions))
        return partitions

    def _assign_new(self, consumer: Consumer, known: set[tuple[str, int]]
                    ) -> set[tuple[str, int]]:
        try:
            new = self._partitions(consumer) - known
        except Exception as error:  # a broker outage: try again at the next refresh
            log.warning("live feed could not refresh its partitions: %s", error)
            return set()
        if new:  # added after start-up: everything on them is new
            consumer.incremental_assign([TopicPartition(t, p, OFFSET_BEGINNING)
                                         for t, p in sorted(new)])
            log.info("live feed added partitions %s", sorted(new))
        return new

    def _message(self, record: Message) -> LiveMessage | None:
        error = record.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("live feed: %s", error)
            return None
        key = record.key()
        if key is None or not self._hub.watched(key.decode("utf-8", "replace")):
            return None  # nobody here watches this task: not worth decoding
        try:
            envelope = self._codec.decode(record.value())
        except DecodeError as error:
            # The services' own consumers dead-letter it; a watcher just misses nothing
            # the log does not hold (events are read from the log on a gap).
            log.warning("live feed skipped %s[%d]@%d: %s", record.topic(), record.partition(),
                        record.offset(), error)
            return None
        if record.topic() == self._events_topic:
            return event_message(envelope)
        return progress_message(envelope)


def _settle(waiter: asyncio.Future[None], error: Exception | None) -> None:
    if waiter.done():  # its stream gave up waiting
        return
    if error is None:
        waiter.set_result(None)
    else:
        waiter.set_exception(error)


class PostgresEventLog:
    """Reads of the event log itself (not a projection): what a watcher replays."""

    def __init__(self, pool: ConnectionPool, codec: AvroCodec,
                 pool_of: Callable[[str], ConnectionPool] | None = None) -> None:
        # ``pool_of``: the pool of a task's shard (a sharded store); unset, ``pool`` for all.
        self._pool_of = pool_of if pool_of is not None else (lambda _task_id: pool)
        self._codec = codec

    async def events_from(self, task_id: str, first_version: int,
                          limit: int) -> list[LiveMessage]:
        return await run_in_threadpool(self._events_from, task_id, first_version, limit)

    def _events_from(self, task_id: str, first_version: int, limit: int) -> list[LiveMessage]:
        with self._pool_of(task_id).connection() as conn:
            rows = conn.execute(
                "SELECT payload FROM events WHERE stream_id = %s AND version >= %s"
                " ORDER BY version LIMIT %s", (task_id, first_version, limit)).fetchall()
        return [event_message(self._codec.decode(bytes(payload))) for (payload,) in rows]

    async def progress(self, task_id: str) -> list[LiveMessage]:
        return await run_in_threadpool(self._progress, task_id)

    def _progress(self, task_id: str) -> list[LiveMessage]:
        with self._pool_of(task_id).connection() as conn:
            rows: list[Any] = conn.execute(
                "SELECT step, attempt, progress, message, reported_at FROM step_progress"
                " WHERE task_id = %s ORDER BY reported_at", (task_id,)).fetchall()
        return [stored_progress(task_id, step, attempt, progress, message, _ms(reported_at))
                for step, attempt, progress, message, reported_at in rows]


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)
