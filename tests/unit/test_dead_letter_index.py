"""What the dead-letter index knows of a letter: its task and tenant, and the shown document."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.dead_letters import attribution, letter_document, task_of_key
from tasksaga.adapters.wire import DeadLetter, Envelope
from tasksaga.core import messages as msg

TASK = str(uuid.uuid4())
codec = AvroCodec()


def letter(value: bytes | None, key: bytes | None = TASK.encode()) -> DeadLetter:
    return DeadLetter("p.task-commands", 2, 9, "p-orchestrator", "boom", key, value, 1,
                      {"traceparent": "00-ab"})


def test_a_key_names_its_task_whether_keyed_by_task_or_by_task_and_step() -> None:
    assert task_of_key(TASK.encode()) == TASK
    assert task_of_key(f"{TASK}:Resize".encode()) == TASK
    assert task_of_key(b"poison") is None and task_of_key(None) is None


def test_a_dead_lettered_submission_names_its_tenant_and_garbage_names_none() -> None:
    submit = msg.SubmitTask(TASK, "T", "{}", None, None, 1, tenant="acme")
    encoded = codec.encode(Envelope(submit, "m1", TASK, TASK, None, 1))
    assert attribution(codec, letter(encoded)) == (TASK, "acme")
    assert attribution(codec, letter(b"garbage")) == (TASK, None)  # the key still names it
    assert attribution(codec, letter(b"garbage", key=b"poison")) == (None, None)


def test_a_shown_letter_has_its_origin_headers_and_decoded_payload() -> None:
    cancel = msg.CancelTask(TASK, "asked", 5)
    row = {"id": 3, "reason": "boom", "task_id": TASK, "tenant": "acme",
           "source_topic": "p.task-commands", "source_partition": 2, "source_offset": 9,
           "consumer_group": "p-orchestrator", "dlq_topic": "p.dead-letter",
           "dlq_partition": 0, "dlq_offset": 1, "failed_at": datetime(2026, 1, 1, tzinfo=UTC),
           "replayed_at": None, "replayed_by": None, "replay_count": 0,
           "record_key": TASK.encode(), "headers": {"traceparent": "00-ab"},
           "record_value": codec.encode(Envelope(cancel, "m2", TASK, TASK, None, 5))}
    shown = letter_document(row, codec)
    assert shown["source"] == {"topic": "p.task-commands", "partition": 2, "offset": 9,
                               "consumer_group": "p-orchestrator"}
    assert shown["headers"] == {"traceparent": "00-ab"} and shown["key"] == TASK
    assert shown["decoded"]["payload_type"] == "CancelTask"
    assert shown["decoded"]["payload"]["reason"] == "asked"
    garbled = letter_document({**row, "record_value": b"junk"}, codec)
    assert garbled["decoded"] is None and "C3 01" in garbled["undecodable"]
    assert "headers" not in letter_document(row, None)  # a list shows the summary only
