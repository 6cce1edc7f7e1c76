"""An at-least-once consumer loop with a dead-letter topic (and the producer it re-exports).

The consumer stores an offset only after its message was handled (or dead-lettered), so a
crash re-delivers; handlers are idempotent by their inbox record.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from tasksaga.adapters import telemetry
from tasksaga.adapters.avro_codec import AvroCodec, DecodeError
from tasksaga.adapters.kafka_producer import (
    Delivery,
    DeliveryFailed,
    Headers,
    KafkaProducer,
    producer_config,
)
from tasksaga.adapters.wire import DeadLetter, Envelope
from tasksaga.core.retry import service_retry_delay_ms

log = logging.getLogger(__name__)

__all__ = ["METADATA_REFRESH_MS", "ConsumerLoop", "ConsumerSettings", "Delivery",
           "DeliveryFailed", "Headers", "KafkaProducer", "Unprocessable", "producer_config"]

# How often a consumer asks for the metadata of its subscribed topics (see ConsumerLoop).
METADATA_REFRESH_MS = 10_000


class Unprocessable(Exception):
    """The message is well-formed but can never be handled; it goes to the dead-letter topic."""


def _infrastructure_error(error: BaseException) -> bool:
    # Import lazily: the bus must not require the Postgres driver to be importable.
    import psycopg

    if isinstance(error, DeliveryFailed):
        return not error.too_large  # an oversized record never fits: not worth waiting for
    return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError | KafkaException)


@dataclass
class ConsumerSettings:
    bootstrap: str
    group_id: str
    topics: list[str]
    dead_letter_topic: str
    client_id: str = "tasksaga"
    group_instance_id: str | None = None
    auto_offset_reset: str = "earliest"
    max_poll_interval_ms: int = 600_000
    # "range" gives partition N of every subscribed topic to the same member: the
    # orchestrator needs it so that one instance owns both a task's commands and its results.
    assignment_strategy: str = "cooperative-sticky"
    extra: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Envelope], None]
BatchHandler = Callable[[list[Envelope]], None]


class ConsumerLoop:
    """Polls, decodes, handles, stores the offset. Runs until ``stop`` is set."""

    MAX_HANDLER_FAILURES = 5

    def __init__(
        self,
        settings: ConsumerSettings,
        codec: AvroCodec,
        handler: Handler,
        dead_letters: KafkaProducer,
        stop: threading.Event,
        now_ms: Callable[[], int],
        batch_handler: BatchHandler | None = None,
        batch_size: int = 200,
        skip: Callable[[Message], bool] | None = None,
    ) -> None:
        self.settings = settings
        # Records this consumer has nothing to do for, told by their headers: their offsets
        # are stored without decoding or handling them.
        self._skip = skip
        self.skipped = 0
        self._batch_handler = batch_handler
        self._batch_size = batch_size
        self._codec = codec
        self._handler = handler
        self._dead_letters = dead_letters
        self._stop = stop
        self._now_ms = now_ms
        config: dict[str, Any] = {
            "bootstrap.servers": settings.bootstrap,
            "group.id": settings.group_id,
            "client.id": settings.client_id,
            "enable.auto.commit": True,
            "enable.auto.offset.store": False,
            "auto.offset.reset": settings.auto_offset_reset,
            "partition.assignment.strategy": settings.assignment_strategy,
            "max.poll.interval.ms": settings.max_poll_interval_ms,
            # A dead member's partitions move after this long (takeover); a live member that
            # stalls longer is evicted and rejoins.
            "session.timeout.ms": 6_000,
            "heartbeat.interval.ms": 1_000,
            # A subscribed topic missing from the metadata (created later, or not yet known
            # to the broker that answered) is looked up again only this often: librdkafka's
            # default of 5 min left a fresh group consuming nothing for minutes.
            "topic.metadata.refresh.interval.ms": METADATA_REFRESH_MS,
            **settings.extra,
        }
        if settings.group_instance_id:
            config["group.instance.id"] = settings.group_instance_id
        self._config = config
        self.consumer = Consumer(config)
        # The partitions owned, as the rebalance callbacks (served inside poll, on this
        # thread) reported them: consumer.assignment() is a round trip to librdkafka's main
        # thread with the interpreter held, once per batch.
        self.assignment: frozenset[tuple[str, int]] = frozenset()
        # Set by a fatal consumer error: the consumer is then unusable for good.
        self._fatal: KafkaError | None = None
        self.replacements = 0  # consumers replaced after a fatal error (a figure for tests)

    def _subscribe(self) -> None:
        self.consumer.subscribe(self.settings.topics, on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_revoke)

    def _on_assign(self, _consumer: object, partitions: list[TopicPartition]) -> None:
        self.assignment |= {(p.topic, p.partition) for p in partitions}

    def _on_revoke(self, _consumer: object, partitions: list[TopicPartition]) -> None:
        self.assignment -= {(p.topic, p.partition) for p in partitions}

    def _replace_failed_consumer(self) -> None:
        """A fatal error leaves the consumer deaf while the process lives on: a static member
        fenced by its own group.instance.id after its coordinator moved (R3; apache/kafka#23542)
        polled nothing ever again. A new consumer with the same instance id rejoins and takes
        the partitions back; the inboxes make whatever it receives again harmless."""
        error, self._fatal = self._fatal, None
        log.error("consumer of %s failed for good (%s): replacing it", self.settings.group_id,
                  error)
        self._forget_assignment()
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError) as close_error:
            log.info("closing the failed consumer: %s", close_error)
        self.consumer = Consumer(self._config)
        self._subscribe()
        self.replacements += 1

    def _forget_assignment(self) -> None:
        """What a loop holds of the failed consumer's partitions."""
        self.assignment = frozenset()

    def run(self) -> None:
        self._subscribe()
        try:
            while not self._stop.is_set():
                if self._fatal is not None:
                    self._replace_failed_consumer()
                if self._batch_handler is not None:
                    self._run_batch(self._batch_handler)
                    continue
                message = self.poll(0.5)
                if message is not None:
                    self.process(message)
        finally:
            self.consumer.close()

    def poll(self, timeout: float) -> Message | None:
        """The next message, or None (nothing arrived, or a consumer error was logged)."""
        message = self.consumer.poll(timeout)
        if message is None:
            return None
        error = message.error()
        if error is not None:
            self._on_error(error)
            return None
        return message

    def _run_batch(self, handler: BatchHandler) -> None:
        """Whatever arrived, up to batch_size, handled together; one by one if that fails."""
        # Block for the first message only, then take what has already arrived: waiting to
        # fill a batch would add its timeout to every hop at low load.
        first = self.consumer.poll(0.5)
        if first is None:
            return
        messages = [first, *self.consumer.consume(num_messages=self._batch_size - 1, timeout=0)]
        decoded: list[tuple[Message, Envelope]] = []
        for message in messages:
            error = message.error()
            if error is not None:
                self._on_error(error)
                continue
            if self._skip is not None and self._skip(message):
                self.skipped += 1
                continue
            try:
                decoded.append((message, self._codec.decode(message.value())))
            except DecodeError as decode_error:
                self.dead_letter(message, str(decode_error))
        if decoded:
            try:
                with telemetry.batch_span(self.settings.group_id, [m for m, _ in decoded],
                                          [e for _, e in decoded]):
                    handler([envelope for _, envelope in decoded])
            except Exception as error:
                log.info("batch of %d failed (%s); handling one by one", len(decoded), error)
                for message, _ in decoded:
                    if not self.handle(message):
                        return  # stopping: offsets stay unstored, the rest is redelivered
        self._store_positions([m for m in messages if m.error() is None])

    def _store_positions(self, messages: list[Message]) -> None:
        positions: dict[tuple[str, int], int] = {}
        for message in messages:
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            assert topic is not None and partition is not None and offset is not None
            positions[(topic, partition)] = max(positions.get((topic, partition), 0), offset + 1)
        self._store(positions)

    def _store(self, positions: dict[tuple[str, int], int]) -> None:
        """Store the positions of the partitions still assigned. A rebalance served by the
        poll that fetched a batch can revoke partitions of messages fetched just before; their
        new owner handles those messages again (the inbox recognises them), and storing their
        offsets fails with _STATE, which stopped the orchestrator (R5)."""
        if not positions:
            return
        owned = {key: offset for key, offset in positions.items() if key in self.assignment}
        if len(owned) < len(positions):
            log.info("not storing offsets of revoked partitions %s",
                     sorted(set(positions) - set(owned)))
        if not owned:
            return
        try:
            self.consumer.store_offsets(
                offsets=[TopicPartition(t, p, o) for (t, p), o in owned.items()])
        except KafkaException as error:
            if error.args[0].code() != KafkaError._STATE:
                raise
            log.info("offsets %s not stored, revoked meanwhile: %s", owned, error)

    def _on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        # librdkafka reports a fatal error as an error event coded _FATAL, whose fatal()
        # flag is not set: the code is what tells.
        if error.code() == KafkaError._FATAL or error.fatal():
            self._fatal = error
        log.warning("consumer error: %s", error)

    def process(self, message: Message) -> None:
        if self._skip is not None and self._skip(message):
            self.skipped += 1
            self.store_offset(message)
        elif self.handle(message):
            self.store_offset(message)

    def handle(self, message: Message) -> bool:
        """Handle or dead-letter the message; False only when stopping before it was done."""
        try:
            envelope = self._codec.decode(message.value())
        except DecodeError as error:
            self.dead_letter(message, str(error))
            return True
        failures = 0
        while not self._stop.is_set():
            try:
                with telemetry.consume_span(self.settings.group_id, message, envelope):
                    self._handler(envelope)
                break
            except Unprocessable as error:
                self.dead_letter(message, str(error))
                break
            except Exception as error:
                failures += 1
                if not _infrastructure_error(error) and failures >= self.MAX_HANDLER_FAILURES:
                    log.exception("handler failed %d times; dead-lettering", failures)
                    self.dead_letter(message, f"handler failed: {type(error).__name__}: {error}")
                    break
                log.warning("handler failed (%s), retrying: %s", type(error).__name__, error)
                self._stop.wait(service_retry_delay_ms(failures) / 1000)
        else:
            return False  # stopping: leave the offset unstored so the message is redelivered
        return True

    def store_offset(self, message: Message) -> None:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None and partition is not None and offset is not None
        self._store({(topic, partition): offset + 1})

    def dead_letter(self, message: Message, reason: str) -> None:
        log.error("dead-lettering %s[%d]@%d: %s", message.topic(), message.partition(),
                  message.offset(), reason)
        letter = DeadLetter(
            source_topic=message.topic() or "",
            source_partition=message.partition() or 0,
            source_offset=message.offset() or 0,
            consumer_group=self.settings.group_id,
            reason=reason,
            key=message.key(),
            value=message.value(),
            failed_at_ms=self._now_ms(),
            headers=text_headers(message),
        )
        key = message.key()
        envelope = Envelope(
            payload=letter,
            message_id=f"dlq:{message.topic()}:{message.partition()}:{message.offset()}",
            task_id=key.decode("utf-8", "replace") if key else "",
            correlation_id="",
            causation_id=None,
            occurred_at_ms=letter.failed_at_ms,
        )
        self._dead_letters.produce(
            self.settings.dead_letter_topic, key, self._codec.encode(envelope)
        )
        self._dead_letters.flush()


def text_headers(message: Message) -> dict[str, str]:
    """A record's headers as text (the services write only text ones: trace context)."""
    headers: dict[str, str] = {}
    for name, raw in list(message.headers() or []):
        headers[str(name)] = (raw.decode("utf-8", "replace") if isinstance(raw, bytes)
                              else str(raw or ""))
    return headers
