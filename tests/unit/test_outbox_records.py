"""The records a decision sends: events on task-events with the headers a consumer filters on
(event type, callback or not), commands keyed by task and step on their queue's topic."""

from __future__ import annotations

from dataclasses import replace

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.wire import CALLBACK_HEADER, EVENT_TYPE_HEADER, Envelope, Topics
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.registry import TaskRegistry
from tasksaga.core.state import TaskState
from tasksaga.orchestrator.outbox_records import OutboxRecords
from tests.unit.sagas import linear

TOPICS = Topics("t")


def _event(task_id: str, version: int, event: ev.TaskEvent) -> Envelope:
    return Envelope(payload=event, message_id=f"{task_id}:{version}", task_id=task_id,
                    correlation_id=task_id, causation_id=None, occurred_at_ms=1,
                    task_type="Linear", version=version)


def test_event_records_carry_their_type_and_whether_the_task_has_a_callback() -> None:
    records = OutboxRecords(TaskRegistry([linear(1)]), AvroCodec(), TOPICS)
    events = [_event("T", 2, ev.StepCompleted("S1", 1, "{}", 1)),
              _event("T", 3, ev.TaskCompleted("{}", 1))]
    quiet = TaskState(task_id="T", task_type="Linear", version=3)
    called = replace(quiet, callback_url="https://example.test/hook")
    for state, callback in ((quiet, b"0"), (called, b"1")):
        sent = records.events(state, events, [b"a", b"b"], [("traceparent", b"x")])
        assert [(r.topic, r.key, r.value) for r in sent] == [
            (TOPICS.task_events, b"T", b"a"), (TOPICS.task_events, b"T", b"b")]
        assert [dict(r.headers) for r in sent] == [
            {"traceparent": b"x", EVENT_TYPE_HEADER: b"StepCompleted", CALLBACK_HEADER: callback},
            {"traceparent": b"x", EVENT_TYPE_HEADER: b"TaskCompleted", CALLBACK_HEADER: callback}]


def test_a_step_command_is_keyed_by_task_and_step_on_its_queues_topic() -> None:
    codec = AvroCodec()
    records = OutboxRecords(TaskRegistry([linear(1)]), codec, TOPICS)
    state = TaskState(task_id="T", task_type="Linear", version=2)
    command = msg.ExecuteStep("T", "Linear", "S1", 1, "q", "{}", {}, "T:S1:1", 0, 2)
    [record] = records.commands(state, [command], "T:2", 5, [])
    assert (record.topic, record.key) == (TOPICS.step_commands("q"), b"T:S1")
    decoded = codec.decode(record.value)
    assert (decoded.message_id, decoded.causation_id, decoded.payload) == (
        "T:2:cmd0", "T:2", command)
