"""A consumer that runs up to N messages at once, across and within partitions.

Step commands of one parallel group share a task and may share a partition; a consumer that
handles one message at a time would run them one after another. Here a pool of threads runs
them concurrently while the consumer keeps polling (paused when the pool stays full), so long
steps never exceed Kafka's poll interval either.

Offsets complete out of order, so each partition's committed position is the lowest offset
not yet finished (``OffsetTracker``): a crash re-delivers whatever had not finished below it,
never skips it. The position is committed as soon as a message finishes (its result was
acknowledged; the polling thread sends it between two short polls), not on a timer, so a
killed worker re-runs only what was in flight. One commit is in flight at a time: what
finishes meanwhile goes in the next one, and a failed commit is sent again.

Each message runs under a ``Lease`` on its partition. When a rebalance takes a partition away,
the consumer first lets what runs on it finish (up to ``revoke_drain_seconds``) and commits its
position before giving it up: with the cooperative protocol the new owner starts only after
that, so a step is not run by two workers at once. What still runs at the deadline, or on a
partition *lost* (this member was evicted: another one already owns it), has its lease
revoked: handlers are told to stop, and what they finish afterwards is neither reported nor
committed by this worker.

A slot and an offset are always released, whatever the handler raises: an unexpected failure
dead-letters the message with its reason (re-running a step handler in a loop would repeat its
effects); only a message that could not even be dead-lettered keeps its offset uncommitted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from tasksaga.adapters import telemetry
from tasksaga.adapters.avro_codec import AvroCodec, DecodeError
from tasksaga.adapters.kafka_bus import (
    ConsumerLoop,
    ConsumerSettings,
    KafkaProducer,
    Unprocessable,
)
from tasksaga.adapters.partition_leases import Lease as Lease
from tasksaga.adapters.partition_leases import LeasedHandler, OffsetTracker, PartitionKey
from tasksaga.adapters.wire import Envelope

log = logging.getLogger(__name__)

_ANY_OFFSET = 2**63  # no watermark known: every record counts as inherited


class ParallelConsumerLoop(ConsumerLoop):
    PAUSE_AFTER_S = 5.0
    BUSY_POLL_S = 0.01
    # An unanswered commit stops holding back the next one after this long.
    COMMIT_ANSWER_S = 10.0

    def __init__(
        self, settings: ConsumerSettings, codec: AvroCodec, handler: LeasedHandler,
        dead_letters: KafkaProducer, stop: threading.Event, now_ms: Callable[[], int], *,
        concurrency: int, shutdown_seconds: float = 20.0, revoke_drain_seconds: float = 10.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        # Offsets are committed explicitly as messages finish; a timer would commit late.
        settings = replace(settings, extra={**settings.extra, "enable.auto.commit": False,
                                            "on_commit": self._on_commit})
        super().__init__(settings, codec, self._unleased, dead_letters, stop, now_ms)
        self._leased_handler = handler
        self._concurrency = concurrency
        self._shutdown_seconds = shutdown_seconds
        self._revoke_drain_seconds = revoke_drain_seconds
        self._tracker = OffsetTracker()
        self._leases: dict[PartitionKey, dict[int, Lease]] = {}
        self._changed = threading.Condition()  # guards the tracker and leases; signals a free slot
        self._paused: set[PartitionKey] = set()
        # Positions taken from the tracker, not yet sent (guarded by _changed): the polling
        # thread sends them (_send_commits).
        self._pending: dict[PartitionKey, int] = {}
        # The latest position sent per partition (polling thread only): a failed commit is
        # sent again only if nothing later was sent meanwhile, so a position never goes back.
        self._sent: dict[PartitionKey, int] = {}
        # One asynchronous commit in flight at a time (polling thread only): positions that
        # move meanwhile wait in _pending and go in the next. A queue of commits to a slow
        # group coordinator held back the heartbeats behind them, and the member was evicted
        # over and over while a broker recovered (R3).
        self._commit_sent_at: float | None = None
        # Per owned partition, the first offset produced after this consumer got it.
        self._new_from: dict[PartitionKey, int] = {}
        # The partitions owned, as the rebalance callbacks reported them. Other threads read
        # this instead of consumer.assignment(), which would wait for the polling thread.
        self.assignment: frozenset[PartitionKey] = frozenset()
        self.commits = 0  # explicit offset commits sent (a figure for tests and benchmarks)

    @staticmethod
    def _unleased(_envelope: Envelope) -> None:
        raise RuntimeError("the parallel loop runs its handler with a lease")

    def _subscribe(self) -> None:
        self.consumer.subscribe(self.settings.topics, on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)

    def _forget_assignment(self) -> None:
        """The failed consumer's partitions are lost, as if another member had them."""
        keys = set(self.assignment)
        self.assignment = frozenset()
        self._release(keys)
        self._paused = set()
        self._sent = {}
        self._new_from = {}
        self._commit_sent_at = None

    def run(self) -> None:
        self._subscribe()
        futures: set[Future[None]] = set()
        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="step") as pool:
            try:
                while not self._stop.is_set():
                    if self._fatal is not None:
                        self._replace_failed_consumer()
                    self._throttle()
                    self._send_commits()
                    # While steps run, poll briefly: their positions are committed between
                    # polls, and a killed worker re-runs what finished but was not committed.
                    with self._changed:
                        busy = self._tracker.running > 0
                    message = self.poll(self.BUSY_POLL_S if busy else 0.2)
                    if message is None:
                        continue
                    topic, partition = message.topic() or "", message.partition() or 0
                    offset = message.offset() or 0
                    lease = Lease(topic, partition, offset,
                                  inherited=offset < self._first_new_offset(topic, partition))
                    with self._changed:
                        self._tracker.started((topic, partition), offset)
                        self._leases.setdefault((topic, partition), {})[offset] = lease
                    futures.add(pool.submit(self._run_one, message, lease))
                    futures = {f for f in futures if not f.done()}
            finally:
                # Let running steps finish (their results are worth sending); what still runs
                # after that loses its lease when close() revokes the partitions.
                wait(futures, timeout=self._shutdown_seconds)
                self._commit_at_shutdown()
                self.consumer.close()

    def _run_one(self, message: Message, lease: Lease) -> None:
        done = False
        try:
            done = self._handle_leased(message, lease)
        except BaseException as error:  # a pool thread must never stall
            log.exception("could not even dead-letter %s[%d]@%d (%r): it stays uncommitted",
                          lease.topic, lease.partition, lease.offset, error)
        finally:
            self._settle(lease, done)

    def _handle_leased(self, message: Message, lease: Lease) -> bool:
        try:
            envelope = self._codec.decode(message.value())
        except DecodeError as error:
            self.dead_letter(message, str(error))
            return True
        try:
            with telemetry.consume_span(self.settings.group_id, message, envelope):
                return self._leased_handler(envelope, lease)
        except Unprocessable as error:
            self.dead_letter(message, str(error))
        except BaseException as error:  # SystemExit & co. from user code too
            log.exception("handler failed on %s[%d]@%d; dead-lettering", lease.topic,
                          lease.partition, lease.offset)
            self.dead_letter(message, f"handler failed: {type(error).__name__}: {error}")
        return True

    def _settle(self, lease: Lease, done: bool) -> None:
        key = (lease.topic, lease.partition)
        with self._changed:
            self._leases.get(key, {}).pop(lease.offset, None)
            if not lease.revoked:
                if done:
                    self._tracker.finished(key, lease.offset)
                else:
                    self._tracker.hold(key, lease.offset)
                # A partition's positions only grow: the latest one covers the earlier ones.
                self._pending.update(self._tracker.commit_positions())
            self._changed.notify_all()

    def _send_commits(self) -> None:
        """Send the positions the pool threads left, from the polling thread only.

        The client lets one thread at a time into a consumer (2.16's gate): a pool thread
        calling commit() waits while the polling thread is inside poll(), which a tight poll
        loop hardly ever leaves, and inside poll() a rebalance runs ``_on_revoke``, which needs
        ``_changed``. Committing from the pool threads under ``_changed`` deadlocked the worker
        at the first rebalance that came while a commit waited (R5: it never polled again)."""
        if (self._commit_sent_at is not None
                and time.monotonic() - self._commit_sent_at < self.COMMIT_ANSWER_S):
            return  # the previous commit is unanswered: its successor waits in _pending
        with self._changed:
            positions, self._pending = self._pending, {}
        self._commit(positions)

    def _commit_at_shutdown(self) -> None:
        """Commit, synchronously, the positions of what finished during the drain.

        ``_send_commits`` skips them whenever the commit sent just before the stop is still
        unanswered (its answer is served by a poll that never comes), and close() commits
        nothing itself: they were left to the revoke callback close() runs, so the drained
        steps' handover hung on the client calling it. The latest positions sent are
        committed again with them, in case that unanswered commit failed; only partitions
        still owned, so a new owner's position is never moved back."""
        with self._changed:
            positions = {**self._sent, **self._pending}
            self._pending = {}
        owned = {key: offset for key, offset in positions.items() if key in self.assignment}
        if not owned:
            return
        # The latest positions sent from now on: close() runs the revoke callback next, which
        # commits them again, and must not move a partition back to an older one.
        self._sent.update(owned)
        try:
            self.consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in owned.items()],
                asynchronous=False,
            )
            self.commits += 1
        except (KafkaException, RuntimeError) as error:
            log.warning("could not commit offsets %s at shutdown: %s", owned, error)

    def _commit(self, positions: dict[PartitionKey, int]) -> None:
        """Commit asynchronously (on the polling thread, so in the order positions were taken)."""
        if not positions:
            return
        self._sent.update(positions)
        self._commit_sent_at = time.monotonic()
        try:
            self.consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in positions.items()],
                asynchronous=True,
            )
            self.commits += 1
        except (KafkaException, RuntimeError) as error:  # revoked or closing meanwhile
            self._commit_sent_at = None  # refused at once: no answer will come
            log.info("could not commit offsets %s: %s", positions, error)

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """Served by poll(). A failed commit is sent again with the next ones (positions are
        only taken from the tracker when they move, so an idle partition would otherwise keep
        an old committed offset, and its next owner would run finished steps again)."""
        self._commit_sent_at = None
        failed = {(p.topic, p.partition): p.offset for p in partitions
                  if error is not None or p.error is not None}
        if not failed:
            return
        log.warning("offset commit failed (%s), sending it again: %s",
                    error or [p.error for p in partitions if p.error is not None], failed)
        with self._changed:
            for key, offset in failed.items():
                if (key in self.assignment and offset >= self._sent.get(key, -1)
                        and offset > self._pending.get(key, -1)):
                    self._pending[key] = offset

    def _throttle(self) -> None:
        """With a full pool, wait for a free slot; pause the partitions only when the pool
        stays full for PAUSE_AFTER_S (long steps), so the consumer can keep polling within
        Kafka's poll interval. Pausing is the exception because librdkafka drops its
        prefetched messages on pause/resume and backs off about a second before fetching."""
        waited_until = time.monotonic() + self.PAUSE_AFTER_S
        with self._changed:
            while (self._tracker.running >= self._concurrency and not self._paused
                   and time.monotonic() < waited_until and not self._stop.is_set()):
                self._changed.wait(0.1)
            full = self._tracker.running >= self._concurrency
        if full:
            assignment = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
            newly = assignment - self._paused
            if newly:
                self.consumer.pause([TopicPartition(t, p) for t, p in newly])
                self._paused |= newly
        elif self._paused:
            self.consumer.resume([TopicPartition(t, p) for t, p in self._paused])
            self._paused = set()

    def _first_new_offset(self, topic: str, partition: int) -> int:
        """The partition's high watermark when its first record since the assignment came:
        records below it may have been handled by a previous owner. Read on the polling
        thread, not in the rebalance callback (a broker query there held up the handover)."""
        key = (topic, partition)
        if key not in self._new_from:
            try:
                _low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=2.0, cached=False)
            except (KafkaException, RuntimeError) as error:
                log.info("no high watermark of %s[%d] (%s): its records count as inherited",
                         topic, partition, error)
                return _ANY_OFFSET
            self._new_from[key] = high
        return self._new_from[key]

    def _on_assign(self, _consumer: object, partitions: list[TopicPartition]) -> None:
        # Not assigning here: the client then adds these partitions itself (incrementally).
        self.assignment |= {(p.topic, p.partition) for p in partitions}
        for p in partitions:  # their high watermarks are read at their first record
            self._new_from.pop((p.topic, p.partition), None)

    def _on_revoke(self, _consumer: object, partitions: list[TopicPartition]) -> None:
        """Served inside poll() on the polling thread: the group waits for it, and the new
        owner of these partitions starts from the position committed here."""
        keys = {(p.topic, p.partition) for p in partitions}
        self.assignment -= keys
        # While stopping, run() has already waited for the running steps.
        drain_s = 0.0 if self._stop.is_set() else self._revoke_drain_seconds
        deadline = time.monotonic() + drain_s
        with self._changed:
            while (any(self._leases.get(key) for key in keys)
                   and time.monotonic() < deadline):
                self._changed.wait(0.05)
            pending = {key: self._pending.pop(key) for key in keys if key in self._pending}
        # The latest position sent is committed again too: an asynchronous commit sent once
        # the rebalance had begun is refused (REBALANCE_IN_PROGRESS), and its answer comes
        # after this callback, for partitions no longer owned; the new owner then started
        # below it and ran finished steps again (a rolling restart's re-run).
        positions = {key: max(pending.get(key, -1), self._sent.get(key, -1))
                     for key in keys if key in pending or key in self._sent}
        if positions:
            try:
                self.consumer.commit(
                    offsets=[TopicPartition(t, p, o) for (t, p), o in positions.items()],
                    asynchronous=False)
                self.commits += 1
            except KafkaException as error:
                log.warning("could not commit %s before giving the partitions up: %s "
                            "(their new owner runs those steps again)", positions, error)
        self._release(keys)

    def _on_lost(self, _consumer: object, partitions: list[TopicPartition]) -> None:
        """Another member already owns these partitions: stop at once, commit nothing."""
        keys = {(p.topic, p.partition) for p in partitions}
        self.assignment -= keys
        self._release(keys)

    def _release(self, keys: set[PartitionKey]) -> None:
        # librdkafka keeps a partition's pause flag across revocation and re-assignment:
        # resume what this loop paused, or a partition given back later stays paused for good.
        paused = [TopicPartition(t, p) for t, p in keys & self._paused]
        if paused:
            try:
                self.consumer.resume(paused)
            except KafkaException as error:
                log.warning("could not resume %s before giving them up: %s", paused, error)
        with self._changed:
            for key in keys:
                for lease in self._leases.pop(key, {}).values():
                    lease.revoke()  # the handler is told to stop; its result is not sent
                self._tracker.forget(key)
                self._pending.pop(key, None)  # its new owner commits it from now on
                self._sent.pop(key, None)
                self._paused.discard(key)
            self._changed.notify_all()
