"""Sends a step's result until the broker acknowledged it, without ever running the step again.

The encoded result is kept and re-sent on failure with a capped backoff, for as long as the
command's lease holds; a result too large for the configured limit (or for the broker) is
replaced by a clear, non-retryable failure of the attempt, so no oversized record is produced.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from tasksaga.adapters import telemetry
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import DeliveryFailed
from tasksaga.adapters.wire import Envelope
from tasksaga.core.ports import Bus, Sending
from tasksaga.core.retry import service_retry_delay_ms

log = logging.getLogger(__name__)

# Below the broker's default message.max.bytes (1 MiB): the envelope and headers need room.
DEFAULT_MAX_RESULT_BYTES = 900_000


class ResultTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the step's result is {size} bytes encoded, over the limit of {limit} "
                         "bytes (TASKSAGA_WORKER_MAX_RESULT_BYTES): store large data in object "
                         "storage and return its key")
        self.size, self.limit = size, limit


@dataclass(frozen=True)
class InFlight:
    """A result sent without waiting (``ResultSender.send_nowait``), kept to be sent again."""

    key: bytes
    value: bytes
    sending: Sending


class ResultSender:
    def __init__(self, producer: Bus, codec: AvroCodec, topic: str,
                 stop: threading.Event, max_bytes: int = DEFAULT_MAX_RESULT_BYTES,
                 retry_cap_s: float = 5.0) -> None:
        if max_bytes <= 0:
            raise ValueError(f"the result size limit must be positive, got {max_bytes}")
        self._producer = producer
        self._codec = codec
        self._topic = topic
        self._stop = stop
        self.max_bytes = max_bytes
        self._retry_cap_s = retry_cap_s
        self.resends = 0  # sends repeated after a failed delivery (a figure for tests)

    def encode(self, envelope: Envelope) -> bytes:
        """The record's bytes; ResultTooLarge over the limit, the codec's error if invalid."""
        value = self._codec.encode(envelope)
        if len(value) > self.max_bytes:
            raise ResultTooLarge(len(value), self.max_bytes)
        return value

    def deliver(self, key: bytes, value: bytes, lost: Callable[[], bool]) -> None:
        """Send until acknowledged. Raises DeliveryFailed when the broker refuses the record
        as too large, or when ``lost()`` (the lease was revoked) or the worker stops while it
        is still unacknowledged."""
        failures = 0
        headers = telemetry.inject_headers()  # the result continues the command's trace
        while True:
            try:
                self._producer.send_and_wait(self._topic, key, value, headers)
                return
            except DeliveryFailed as error:
                if error.too_large or lost() or self._stop.is_set():
                    raise
                failures += 1
                self.resends += 1
                log.warning("result not delivered (%s); sending it again (try %d)",
                            error.reason, failures + 1)
                cap_ms = round(self._retry_cap_s * 1000)
                self._stop.wait(service_retry_delay_ms(failures, cap_ms) / 1000)

    def send_nowait(self, key: bytes, value: bytes) -> InFlight:
        """Send without waiting for the broker (a chain's next step runs meanwhile); ``settle``
        it before the command is done."""
        sending = self._producer.produce_nowait(self._topic, key, value,
                                                telemetry.inject_headers())
        return InFlight(key, value, sending)

    def settle(self, sent: InFlight, lost: Callable[[], bool], timeout_s: float = 60.0) -> None:
        """Wait for a result sent with ``send_nowait``; one the broker did not acknowledge is
        sent again as ``deliver`` does (raising as it does)."""
        settled = sent.sending.wait(timeout_s)
        error = sent.sending.error
        if settled and error is None:
            return
        if isinstance(error, DeliveryFailed) and error.too_large:
            raise error
        self.resends += 1
        log.warning("result not delivered (%s); sending it again",
                    error if error is not None else f"no answer within {timeout_s:g} s")
        self.deliver(sent.key, sent.value, lost)
