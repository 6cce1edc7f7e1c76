"""Avro envelopes survive a trip through the real broker, with trace headers."""

from __future__ import annotations

from opentelemetry import trace

from tasksaga.adapters import telemetry
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import KafkaProducer
from tasksaga.adapters.topics import ensure_topics
from tasksaga.adapters.wire import Envelope
from tasksaga.core import messages as msg
from tests.integration.relay_support import read_all


def test_a_command_round_trips_through_kafka(
    kafka_bootstrap: str, codec: AvroCodec, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}.codec"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    envelope = Envelope(
        payload=msg.SubmitTask("t1", "CreateZip", '{"a": 1}', "http://x", "key", 5,
                               [msg.ApiStepResult("UploadFiles", "{}")]),
        message_id="m1", task_id="t1", correlation_id="t1", causation_id=None, occurred_at_ms=5,
    )
    # Spans recorded, as the unit tests that share this process's provider expect.
    telemetry.configure("test", environ={"OTEL_TRACES_SAMPLER": "parentbased_always_on"})
    with trace.get_tracer("test").start_as_current_span("submit"):
        producer = KafkaProducer(kafka_bootstrap, "codec-test")
        producer.send_envelope(codec, topic, envelope)
    (value,) = read_all(kafka_bootstrap, topic, expected=1)
    assert codec.decode(value) == envelope
