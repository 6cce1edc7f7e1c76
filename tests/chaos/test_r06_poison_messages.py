"""R6: poison on every consumed topic goes to the dead-letter topic with its reason, and the
partition it sat on moves on.

Three records on every partition of every consumed topic: random bytes, a record with an
unknown schema fingerprint, and a well-formed record whose business content that consumer
cannot take (a task type nobody declared, a message type that does not belong on the topic).
A task submitted after them must complete, and every consumer group's committed offset must
pass them.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from localrun import local_payload_cipher
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.wire import DeadLetter, Envelope, Topics
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tests.chaos.harness import chaos_system, figure, percentile

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]


@dataclass(frozen=True)
class Poison:
    topic: str
    partition: int
    kind: str
    key: bytes
    value: bytes
    reason: str  # a fragment the dead letter's reason must contain
    group: str | None  # the consumer group whose offset must pass it (None: a broadcast)


def _envelope(codec: AvroCodec, payload: object, task_id: str) -> bytes:
    return codec.encode(Envelope(payload=payload, message_id=f"poison-{uuid.uuid4()}",
                                 task_id=task_id, correlation_id=task_id, causation_id=None,
                                 occurred_at_ms=int(time.time() * 1000), task_type="ChaosSaga"))


def _poisons(prefix: str, follower: str, codec: AvroCodec, partitions: int) -> list[Poison]:
    topics = Topics(prefix)
    submit_unknown = msg.SubmitTask(
        task_id=follower, task_type="NoSuchTaskType", request_json="{}", callback_url=None,
        idempotency_key=None, submitted_at_ms=0)
    completed = ev.TaskCompleted(response_json="{}", completed_at_ms=0)
    submit = msg.SubmitTask(task_id=follower, task_type="ChaosSaga", request_json="{}",
                            callback_url=None, idempotency_key=None, submitted_at_ms=0)
    execute = msg.ExecuteStep(
        task_id=follower, task_type="ChaosSaga", step="Reserve", attempt=1, queue="chaos",
        request_json="{}", step_data={}, idempotency_key=f"{follower}:Reserve:1",
        timeout_at_ms=0)
    consumed = [  # topic, record key, wrong-content payload, its reason, group
        (topics.task_commands, follower, submit_unknown, "NoSuchTaskType",
         f"{prefix}-orchestrator"),
        (topics.step_results, follower, completed, "TaskCompleted", f"{prefix}-orchestrator"),
        (topics.step_commands("chaos"), f"{follower}:Reserve", submit, "SubmitTask",
         f"{prefix}-worker-chaos"),
        (topics.task_events, follower, execute, "ExecuteStep", f"{prefix}-notifier"),
        (topics.step_cancellations, f"{follower}:Reserve", submit, "SubmitTask", None),
    ]
    poisons: list[Poison] = []
    for topic, key, payload, reason, group in consumed:
        for partition in range(partitions):
            poisons += [
                Poison(topic, partition, "random bytes", key.encode(), os.urandom(64),
                       "header", group),
                Poison(topic, partition, "unknown schema", key.encode(),
                       b"\xc3\x01" + os.urandom(8) + b"\x02\x04body",
                       "unknown schema fingerprint", group),
                Poison(topic, partition, "invalid payload", key.encode(),
                       _envelope(codec, payload, follower), reason, group),
            ]
    return poisons


def test_poison_on_every_consumed_topic_is_dead_lettered_and_its_partition_moves_on(
    stack_env: dict[str, str],
) -> None:
    codec = AvroCodec(cipher=local_payload_cipher())
    bootstrap = stack_env["TASKSAGA_KAFKA_BOOTSTRAP"]
    with chaos_system(stack_env) as chaos:
        warm = chaos.submit()  # every consumer assigned and running before the poison
        assert warm is not None
        chaos.wait_terminal([warm], timeout_s=60)
        time.sleep(2.0)
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        topic = Topics(chaos.prefix).task_commands
        partitions = len(producer.list_topics(topic, timeout=10).topics[topic].partitions)
        poisons = _poisons(chaos.prefix, f"r6-{uuid.uuid4()}", codec, partitions)
        produced_at: dict[bytes, float] = {}
        positions: dict[bytes, tuple[int, int]] = {}

        def delivered(error: object, message: object) -> None:
            assert error is None, error
            positions[message.value()] = (  # type: ignore[attr-defined]
                message.partition(), message.offset())  # type: ignore[attr-defined]

        for poison in poisons:
            produced_at[poison.value] = time.time()
            producer.produce(poison.topic, key=poison.key, value=poison.value,
                             partition=poison.partition, on_delivery=delivered)
        assert producer.flush(10) == 0
        # Whatever partition the next real task lands on, poison lies before it.
        next_task = chaos.submit()
        assert next_task is not None
        status = chaos.wait_terminal([next_task], timeout_s=60)[next_task]
        letters = _dead_letters(bootstrap, Topics(chaos.prefix).dead_letter, len(poisons),
                                timeout_s=30)
        stuck = _stuck_groups(bootstrap, poisons, positions, timeout_s=20)

    by_value = {letter.value: letter for letter in letters}
    missing = [(p.topic.split(".", 1)[1], p.kind) for p in poisons if p.value not in by_value]
    wrong_reason = [(p.topic.split(".", 1)[1], p.kind, by_value[p.value].reason)
                    for p in poisons
                    if p.value in by_value and p.reason not in by_value[p.value].reason]
    to_dlq = [by_value[p.value].failed_at_ms / 1000 - produced_at[p.value]
              for p in poisons if p.value in by_value]
    figure("R6", poisons=len(poisons), dead_lettered=len(poisons) - len(missing),
           missing=len(missing), wrong_reason=len(wrong_reason), stuck_partitions=len(stuck),
           follower=status, time_to_dlq_p50_s=percentile(to_dlq, 0.5),
           time_to_dlq_max_s=max(to_dlq, default=float("nan")))
    assert missing == [], f"not dead-lettered: {missing}"
    assert wrong_reason == []
    assert all(by_value[p.value].source_topic == p.topic for p in poisons)
    assert status == "Completed"
    assert stuck == [], f"consumer groups that did not move past their poison: {stuck}"


def _dead_letters(bootstrap: str, topic: str, expected: int, timeout_s: float) -> list[DeadLetter]:
    codec = AvroCodec(cipher=local_payload_cipher())
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r6-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    letters: list[DeadLetter] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and len(letters) < expected:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                letter = codec.decode(message.value()).payload
                assert isinstance(letter, DeadLetter)
                letters.append(letter)
    finally:
        consumer.close()
    return letters


def _stuck_groups(bootstrap: str, poisons: list[Poison],
                  positions: dict[bytes, tuple[int, int]], timeout_s: float) -> list[str]:
    """Groups whose committed offset has not passed their last poison on its partition."""
    last: dict[tuple[str, str, int], int] = {}
    for poison in poisons:
        if poison.group is not None:
            partition, offset = positions[poison.value]
            where = (poison.group, poison.topic, partition)
            last[where] = max(last.get(where, -1), offset)
    deadline = time.monotonic() + timeout_s
    stuck = list(last)
    while stuck and time.monotonic() < deadline:
        still: list[tuple[str, str, int]] = []
        for group, topic, partition in stuck:
            consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                 "enable.auto.commit": False})
            try:
                committed = consumer.committed([TopicPartition(topic, partition)], timeout=5)
            finally:
                consumer.close()
            if committed[0].offset <= last[(group, topic, partition)]:
                still.append((group, topic, partition))
        stuck = still
        if stuck:
            time.sleep(1.0)
    return [f"{group} {topic}[{partition}]" for group, topic, partition in stuck]
