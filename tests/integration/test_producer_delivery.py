"""Each send learns its own outcome: one record's failure never reaches another sender.

The failing record is one the broker refuses in its delivery report (larger than its topic's
``max.message.bytes``), not one the client refuses at produce time, so the failure travels the
same path as a broker or network error would.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import DeliveryFailed, KafkaProducer
from tasksaga.adapters.topics import ensure_topics
from tasksaga.adapters.wire import Envelope
from tasksaga.core import messages as msg
from tests.integration.relay_support import read_all


def _topics(bootstrap: str, prefix: str) -> tuple[str, str]:
    good, small = f"{prefix}.good", f"{prefix}.small"
    ensure_topics(bootstrap, [good], partitions=1)
    ensure_topics(bootstrap, [small], partitions=1, config={"max.message.bytes": "2000"})
    return good, small


def _oversized() -> bytes:
    return os.urandom(20_000)  # incompressible: lz4 cannot bring it under the topic's limit


def _envelope(task_id: str) -> Envelope:
    return Envelope(payload=msg.CancelTask(task_id, "test", 1), message_id=f"m-{task_id}",
                    task_id=task_id, correlation_id=task_id, causation_id=None,
                    occurred_at_ms=1)


def test_a_send_never_gets_the_failure_of_another_threads_record(
    kafka_bootstrap: str, codec: AvroCodec, topic_prefix: str
) -> None:
    good, small = _topics(kafka_bootstrap, topic_prefix)
    producer = KafkaProducer(kafka_bootstrap, "producer-test")
    produced = threading.Event()
    outcome: list[BaseException | None] = []

    def sender_a() -> None:  # a request whose record the broker refuses
        producer.produce(small, b"a", _oversized())
        produced.set()
        try:
            producer.flush(20)
            outcome.append(None)
        except DeliveryFailed as error:
            outcome.append(error)

    thread = threading.Thread(target=sender_a)
    thread.start()
    assert produced.wait(10)
    # B's record is written: B must hear success, whatever happened to A's record meanwhile.
    producer.send_envelope(codec, good, _envelope("task-b"))
    thread.join(30)
    (a_error,) = outcome
    assert isinstance(a_error, DeliveryFailed) and a_error.too_large, a_error
    assert [codec.decode(v).task_id for v in read_all(kafka_bootstrap, good, 1)] == ["task-b"]


def test_send_and_wait_raises_the_reason_for_that_record(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    good, small = _topics(kafka_bootstrap, topic_prefix)
    producer = KafkaProducer(kafka_bootstrap, "producer-test")
    pending_elsewhere = producer.produce(small, b"x", _oversized())  # another sender's record
    producer.send_and_wait(good, b"k", b"fine")
    with pytest.raises(DeliveryFailed) as refused:
        producer.send_and_wait(small, b"k", _oversized())
    assert refused.value.too_large and small in str(refused.value)
    assert pending_elsewhere.wait(20) and pending_elsewhere.error is not None


def test_a_batch_flush_reports_which_records_failed(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    good, small = _topics(kafka_bootstrap, topic_prefix)
    producer = KafkaProducer(kafka_bootstrap, "relay-test")
    handles = [producer.produce(good, b"1", b"one"), producer.produce(small, b"2", _oversized()),
               producer.produce(good, b"3", b"three")]
    outcomes = producer.flush(20, raise_on_error=False)
    assert outcomes == handles
    assert [d.error is None for d in outcomes] == [True, False, True]
    assert read_all(kafka_bootstrap, good, 2) == [b"one", b"three"]


def test_an_unreachable_broker_fails_a_send_within_the_delivery_timeout() -> None:
    producer = KafkaProducer("127.0.0.1:1", "outage-test", delivery_timeout_ms=1_500)
    started = time.monotonic()
    with pytest.raises(DeliveryFailed) as failed:
        producer.send_and_wait("tasksaga.anything", b"k", b"v")
    elapsed = time.monotonic() - started
    producer.close(0)
    print(f"\nsend to an unreachable broker failed after {elapsed:.2f} s "
          f"(delivery timeout 1.5 s): {failed.value.reason}")
    assert failed.value.code is not None  # a delivery report said why, not our own wait
