"""Kafka producer whose every record learns its own outcome (per-message delivery reports).

A producer is shared by threads (the API's request threads, a worker's step threads). A shared
list of delivery errors would hand one record's failure to whichever sender flushed next; here
each record has its own ``Delivery`` settled by its own report, and ``flush`` only answers for
the records of the calling thread.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from tasksaga.adapters import telemetry
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.wire import Envelope

Headers = Sequence[tuple[str, bytes]]


def producer_config(bootstrap: str, client_id: str,
                    delivery_timeout_ms: int = 30_000) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        # Durability: every in-sync replica has it, and retries never duplicate or reorder.
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 1,
        "compression.type": "lz4",
        # Every record gets its delivery report within this long, success or failure
        # (librdkafka's default is 5 min): callers such as the API can fail fast.
        "message.timeout.ms": delivery_timeout_ms,
    }


class DeliveryFailed(Exception):
    """This record was not acknowledged by the broker: ``reason`` says why.

    ``code`` is the librdkafka error code when the broker or client refused it, None when no
    delivery report arrived in time. ``too_large`` records will never fit; others may succeed
    when sent again.
    """

    def __init__(self, topic: str, reason: str, code: int | None = None) -> None:
        super().__init__(f"record for {topic} not delivered: {reason}")
        self.topic = topic
        self.reason = reason
        self.code = code

    @property
    def too_large(self) -> bool:
        return self.code == KafkaError.MSG_SIZE_TOO_LARGE


class Delivery:
    """The outcome of one produced record, settled by its own delivery report."""

    def __init__(self, topic: str,
                 on_settled: Callable[[Delivery], None] | None = None) -> None:
        self.topic = topic
        self._settled = threading.Event()
        self._error: DeliveryFailed | None = None
        # Called once settled, on the thread serving delivery reports: keep it short.
        self._on_settled = on_settled

    def _report(self, error: KafkaError | None, _message: Message | None = None) -> None:
        if error is not None:
            self._error = DeliveryFailed(self.topic, str(error), error.code())
        self._settle()

    def _refuse(self, error: DeliveryFailed) -> None:
        self._error = error
        self._settle()

    def _settle(self) -> None:
        self._settled.set()
        if self._on_settled is not None:
            self._on_settled(self)

    @property
    def settled(self) -> bool:
        return self._settled.is_set()

    @property
    def error(self) -> DeliveryFailed | None:
        """Why it failed, once settled; None while pending or after success."""
        return self._error

    def wait(self, timeout: float) -> bool:
        """True once settled (acknowledged or refused)."""
        return self._settled.wait(timeout)

    def result(self) -> None:
        """Raise DeliveryFailed unless this record was acknowledged."""
        if not self._settled.is_set():
            raise DeliveryFailed(self.topic, "no delivery report yet")
        if self._error is not None:
            raise self._error


class KafkaProducer:
    """One librdkafka producer shared by threads; each record learns its own outcome.

    ``send_and_wait`` produces one record and waits for ITS delivery report. ``produce`` +
    ``flush`` batch: ``produce`` returns the record's ``Delivery``, and ``flush`` waits for the
    calling thread's records since its last flush and returns their outcomes, so one thread
    never sees another's failure. A poller thread serves delivery reports as they arrive.
    """

    def __init__(self, bootstrap: str, client_id: str, delivery_timeout_ms: int = 30_000) -> None:
        if delivery_timeout_ms <= 0:
            raise ValueError(f"delivery_timeout_ms must be positive, got {delivery_timeout_ms}")
        self._producer = Producer({**producer_config(bootstrap, client_id, delivery_timeout_ms),
                                   "error_cb": self._on_client_error})
        # librdkafka found every broker unreachable; cleared by the next acknowledged record.
        # A record refused while this holds means an outage, not one leaderless partition.
        self.brokers_down = False
        self.delivery_timeout_s = delivery_timeout_ms / 1000
        self._mine = threading.local()  # the records this thread produced since its last flush
        self._poller: threading.Thread | None = None
        self._poller_lock = threading.Lock()
        self._closed = threading.Event()

    def _pending(self) -> list[Delivery]:
        pending: list[Delivery] | None = getattr(self._mine, "pending", None)
        if pending is None:
            pending = self._mine.pending = []
        return pending

    def produce(self, topic: str, key: bytes | None, value: bytes,
                headers: Headers = ()) -> Delivery:
        """Queue one record for the calling thread's next ``flush``; never raises for a record
        the client refuses (too large, local queue full for the delivery timeout): its
        Delivery says so."""
        delivery = self.produce_nowait(topic, key, value, headers)
        self._pending().append(delivery)
        return delivery

    def produce_nowait(self, topic: str, key: bytes | None, value: bytes,
                       headers: Headers = (),
                       on_settled: Callable[[Delivery], None] | None = None) -> Delivery:
        """Queue one record that no flush waits for (heartbeats): only its Delivery tells,
        and ``on_settled`` once it is settled."""
        self._ensure_poller()
        delivery = Delivery(topic, on_settled)
        deadline = time.monotonic() + self.delivery_timeout_s
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=list(headers),
                                       on_delivery=functools.partial(self._report, delivery))
                return delivery
            except BufferError:  # local queue full: let deliveries drain, up to the timeout
                if time.monotonic() >= deadline:
                    delivery._refuse(DeliveryFailed(topic, "local producer queue full for "
                                                    f"{self.delivery_timeout_s:g} s"))
                    return delivery
                self._producer.poll(0.1)
            except KafkaException as error:  # refused at once: too large, unknown topic...
                kafka_error = error.args[0]
                delivery._refuse(DeliveryFailed(topic, str(kafka_error), kafka_error.code()))
                return delivery

    def _report(self, delivery: Delivery, error: KafkaError | None,
                message: Message | None = None) -> None:
        if error is None:
            self.brokers_down = False
        delivery._report(error, message)

    def _on_client_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.brokers_down = True

    def send_and_wait(self, topic: str, key: bytes | None, value: bytes, headers: Headers = (),
                      timeout_s: float | None = None) -> None:
        """Produce one record and return once the broker acknowledged it; raise DeliveryFailed
        with the reason for this record otherwise. The default timeout outlasts the delivery
        timeout, so a report always arrives first."""
        delivery = self.produce_nowait(topic, key, value, headers)
        wait_s = self.delivery_timeout_s + 5.0 if timeout_s is None else timeout_s
        if not delivery.wait(wait_s):
            raise DeliveryFailed(topic, f"no delivery report within {wait_s:g} s")
        delivery.result()

    def flush(self, timeout: float = 30.0, raise_on_error: bool = True) -> list[Delivery]:
        """Wait for the records this thread produced since its last flush; their outcomes, in
        produce order. Raises the first DeliveryFailed among them unless ``raise_on_error`` is
        False (a relay that handles each record itself)."""
        deadline = time.monotonic() + timeout
        self._producer.flush(timeout)
        pending, self._mine.pending = self._pending(), []
        for delivery in pending:  # the poller may still be serving the last reports
            delivery.wait(max(deadline - time.monotonic(), 0.0))
        if raise_on_error:
            for delivery in pending:
                if not delivery.settled:
                    raise DeliveryFailed(delivery.topic, f"not acknowledged within {timeout:g} s")
                delivery.result()
        return pending

    def send_envelope(
        self, codec: AvroCodec, topic: str, envelope: Envelope, flush: bool = True,
        timeout_s: float | None = None,
    ) -> Delivery | None:
        """Send one envelope keyed by its task. ``flush=True``: wait for its acknowledgement
        (DeliveryFailed otherwise); ``flush=False``: fire and forget, the Delivery is returned."""
        key, value = envelope.task_id.encode(), codec.encode(envelope)
        headers = telemetry.inject_headers()
        if flush:
            self.send_and_wait(topic, key, value, headers, timeout_s)
            return None
        return self.produce_nowait(topic, key, value, headers)

    def _ensure_poller(self) -> None:
        if self._poller is not None:
            return
        with self._poller_lock:
            if self._poller is None:
                self._poller = threading.Thread(target=self._serve_reports, daemon=True,
                                                name="kafka-delivery-reports")
                self._poller.start()

    def _serve_reports(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.1)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (up to ``timeout``), then stop serving reports."""
        self._producer.flush(timeout)
        self._closed.set()
