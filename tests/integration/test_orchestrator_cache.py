"""A stale cached aggregate (another orchestrator wrote meanwhile) costs a retry, never a
wrong or duplicated transition; a batch with a bad message falls back to one by one."""

from __future__ import annotations

import uuid

import pytest

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import Unprocessable
from tasksaga.adapters.pg_store import PostgresEventStore
from tasksaga.adapters.wire import Envelope, Topics
from tasksaga.core import messages as msg
from tasksaga.core.registry import TaskRegistry
from tasksaga.orchestrator.processor import Orchestrator
from tests.unit.sagas import Data, Req, linear


def envelope(payload: object, task_id: str) -> Envelope:
    return Envelope(payload=payload, message_id=str(uuid.uuid4()), task_id=task_id,
                    correlation_id=task_id, causation_id=None, occurred_at_ms=0)


def orchestrators(store: PostgresEventStore, codec: AvroCodec) -> tuple[Orchestrator, ...]:
    task = linear(3)
    task.name = f"Cache{uuid.uuid4().hex[:6]}"
    registry = TaskRegistry([task])
    return tuple(Orchestrator(registry, store, codec, Topics("cache-test"), lambda _tx: 5,
                              lambda: 0.0) for _ in range(2))


def succeeded(task_id: str, step: str) -> msg.StepSucceeded:
    return msg.StepSucceeded(task_id, step, 1, Data(value=step).model_dump_json())


def test_a_stale_cache_is_caught_by_the_version_constraint(
    store: PostgresEventStore, codec: AvroCodec,
) -> None:
    a, b = orchestrators(store, codec)
    task_type = next(iter(a._registry)).name
    task_id = f"cache-{uuid.uuid4()}"
    a.handle(envelope(msg.SubmitTask(task_id, task_type, Req().model_dump_json(), None, None,
                                     5), task_id))
    b.handle(envelope(succeeded(task_id, "S1"), task_id))  # a's cache is now stale
    a.handle(envelope(succeeded(task_id, "S2"), task_id))
    a.handle(envelope(succeeded(task_id, "S3"), task_id))
    with store.transaction() as tx:
        events = tx.load_events(task_id)
    names = [type(e.payload).__name__ for e in events]
    assert [e.version for e in events] == list(range(1, len(events) + 1))
    assert names.count("StepCompleted") == 3 and names[-1] == "TaskCompleted"


def test_a_batch_with_an_unknown_task_type_is_refused_whole(
    store: PostgresEventStore, codec: AvroCodec,
) -> None:
    a, _ = orchestrators(store, codec)
    task_type = next(iter(a._registry)).name
    good, bad = f"cache-{uuid.uuid4()}", f"cache-{uuid.uuid4()}"
    batch = [
        envelope(msg.SubmitTask(good, task_type, Req().model_dump_json(), None, None, 5), good),
        envelope(msg.SubmitTask(bad, "NoSuchType", "{}", None, None, 5), bad),
    ]
    with pytest.raises(Unprocessable):
        a.handle_batch(batch)
    with store.transaction() as tx:
        assert tx.load_events(good) == []  # rolled back with the batch: nothing half-done
    a.handle(batch[0])  # what the consumer does next: one by one
    with store.transaction() as tx:
        assert len(tx.load_events(good)) > 0
