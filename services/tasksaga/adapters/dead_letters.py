"""Dead letters for operators: an index of the dead-letter topic in Postgres (``dead_letters``,
migration 017), the indexer that fills it, and the replay bookkeeping.

The topic stays the record (every consumer writes to it, docs/architecture.md); the index makes
it pageable and filterable, knows the task (and so the tenant) of each letter, and remembers
replays: a letter is marked replayed before it is produced again, so a second replay is a
deliberate act (``again``), never an accident of a double click or a retried request.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message
from psycopg_pool import ConnectionPool

from tasksaga.adapters.avro_codec import AvroCodec, DecodeError
from tasksaga.adapters.wire import DeadLetter, Envelope
from tasksaga.core import messages as msg

log = logging.getLogger(__name__)

INDEX_GROUP_SUFFIX = "dead-letter-index"
_COLUMNS = ("dl.id, dl.dlq_topic, dl.dlq_partition, dl.dlq_offset, dl.source_topic,"
            " dl.source_partition, dl.source_offset, dl.consumer_group, dl.reason,"
            " dl.record_key, dl.record_value, dl.headers, coalesce(dl.tenant, ts.tenant)"
            " AS tenant, dl.task_id, dl.failed_at, dl.indexed_at, dl.replayed_at,"
            " dl.replayed_by, dl.replay_count")


@dataclass(frozen=True)
class LetterFilter:
    dlq_topic: str
    tenant: str | None  # None: every tenant's and the unattributed ones
    source_topic: str | None = None
    reason: str | None = None  # a substring of the reason, case-insensitive


def task_of_key(key: bytes | None) -> str | None:
    """Records are keyed by task id (step commands by ``task:step``)."""
    if not key:
        return None
    head = key.decode("utf-8", "replace").split(":", 1)[0]
    try:
        return str(uuid.UUID(head))
    except ValueError:
        return None


def attribution(codec: AvroCodec, letter: DeadLetter) -> tuple[str | None, str | None]:
    """(task id, tenant) of a dead letter: from its record when it decodes (a SubmitTask names
    its tenant), else the task id its key names; the tenant of a known task is read at query
    time from its status row."""
    try:
        envelope = codec.decode(letter.value)
    except DecodeError:
        return task_of_key(letter.key), None
    tenant = envelope.payload.tenant if isinstance(envelope.payload, msg.SubmitTask) else None
    return envelope.task_id or task_of_key(letter.key), tenant


class DeadLetterIndex:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def record(self, dlq_topic: str, partition: int, offset: int, letter: DeadLetter,
               task_id: str | None, tenant: str | None) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO dead_letters (dlq_topic, dlq_partition, dlq_offset, source_topic,"
                " source_partition, source_offset, consumer_group, reason, record_key,"
                " record_value, headers, task_id, tenant, failed_at) VALUES (%s, %s, %s, %s,"
                " %s, %s, %s, %s, %s, %s, %s, %s, %s, to_timestamp(%s / 1000.0))"
                " ON CONFLICT (dlq_topic, dlq_partition, dlq_offset) DO NOTHING",
                (dlq_topic, partition, offset, letter.source_topic, letter.source_partition,
                 letter.source_offset, letter.consumer_group, letter.reason, letter.key,
                 letter.value, json.dumps(letter.headers), task_id, tenant,
                 letter.failed_at_ms))

    def page(self, where: LetterFilter, after_id: int, limit: int) -> list[dict[str, Any]]:
        clauses = ["dl.dlq_topic = %s", "dl.id > %s"]
        params: list[Any] = [where.dlq_topic, after_id]
        if where.tenant is not None:
            clauses.append("coalesce(dl.tenant, ts.tenant) = %s")
            params.append(where.tenant)
        if where.source_topic is not None:
            clauses.append("dl.source_topic = %s")
            params.append(where.source_topic)
        if where.reason is not None:
            clauses.append("dl.reason ILIKE %s")
            params.append("%" + where.reason.replace("%", r"\%").replace("_", r"\_") + "%")
        with self._pool.connection() as conn:
            cursor = conn.execute(
                f"SELECT {_COLUMNS} FROM dead_letters dl LEFT JOIN task_status ts"
                f" ON ts.task_id = dl.task_id WHERE {' AND '.join(clauses)}"
                " ORDER BY dl.id LIMIT %s", (*params, limit))
            names = [c.name for c in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def get(self, dlq_topic: str, letter_id: int) -> dict[str, Any] | None:
        with self._pool.connection() as conn:
            cursor = conn.execute(
                f"SELECT {_COLUMNS} FROM dead_letters dl LEFT JOIN task_status ts"
                " ON ts.task_id = dl.task_id WHERE dl.dlq_topic = %s AND dl.id = %s",
                (dlq_topic, letter_id))
            row = cursor.fetchone()
            names = [c.name for c in cursor.description or ()]
        return None if row is None else dict(zip(names, row, strict=True))

    def claim_replay(self, letter_id: int, by: str, again: bool) -> bool:
        """Mark the letter replayed (before producing it); False when it already was and
        ``again`` was not asked."""
        with self._pool.connection() as conn:
            row = conn.execute(
                "UPDATE dead_letters SET replayed_at = now(), replayed_by = %s,"
                " replay_count = replay_count + 1 WHERE id = %s"
                " AND (replayed_at IS NULL OR %s) RETURNING id", (by, letter_id, again)
            ).fetchone()
        return row is not None

    def release_replay(self, letter_id: int, previous: dict[str, Any]) -> None:
        """The replay was not acknowledged: the letter is as it was before the claim."""
        with self._pool.connection() as conn:
            conn.execute(
                "UPDATE dead_letters SET replayed_at = %s, replayed_by = %s,"
                " replay_count = %s WHERE id = %s",
                (previous["replayed_at"], previous["replayed_by"], previous["replay_count"],
                 letter_id))


def letter_document(row: dict[str, Any], codec: AvroCodec | None) -> dict[str, Any]:
    """A letter as the API shows it; with ``codec``, the record decoded when it decodes."""
    document = {
        "id": row["id"], "reason": row["reason"], "task_id": row["task_id"],
        "tenant": row["tenant"],
        "source": {"topic": row["source_topic"], "partition": row["source_partition"],
                   "offset": row["source_offset"], "consumer_group": row["consumer_group"]},
        "dead_letter": {"topic": row["dlq_topic"], "partition": row["dlq_partition"],
                        "offset": row["dlq_offset"]},
        "failed_at": _iso(row["failed_at"]), "replayed_at": _iso(row["replayed_at"]),
        "replayed_by": row["replayed_by"], "replay_count": row["replay_count"],
    }
    if codec is None:
        return document
    key, value = row["record_key"], row["record_value"]
    document["headers"] = row["headers"]
    document["key"] = None if key is None else bytes(key).decode("utf-8", "replace")
    document["value_b64"] = None if value is None else base64.b64encode(value).decode()
    try:
        envelope = codec.decode(None if value is None else bytes(value))
        document["decoded"] = _envelope_document(envelope)
    except DecodeError as error:
        document["decoded"] = None
        document["undecodable"] = str(error)
    return document


def _envelope_document(envelope: Envelope) -> dict[str, Any]:
    payload = envelope.payload
    return {"message_id": envelope.message_id, "task_id": envelope.task_id,
            "task_type": envelope.task_type, "payload_type": type(payload).__name__,
            "payload": json.loads(json.dumps(dataclasses.asdict(payload), default=_bytes))}


def _bytes(value: object) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def run_dead_letter_indexer(bootstrap: str, dlq_topic: str, group_id: str, codec: AvroCodec,
                            index: DeadLetterIndex, stop: threading.Event) -> None:
    """Index every record of the dead-letter topic, committing offsets once indexed (a crash
    indexes again; the unique offset makes that a no-op)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([dlq_topic])
    try:
        while not stop.is_set():
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("dead-letter indexer: %s", error)
                continue
            while not stop.is_set():
                try:  # Postgres away: the same letter again, never skipped
                    _index_one(codec, index, dlq_topic, message)
                    consumer.commit(message=message, asynchronous=False)
                    break
                except Exception:
                    log.exception("indexing dead letter %d@%d failed; trying again",
                                  message.partition() or 0, message.offset() or 0)
                    stop.wait(1.0)
    finally:
        consumer.close()


def _index_one(codec: AvroCodec, index: DeadLetterIndex, dlq_topic: str,
               message: Message) -> None:
    partition, offset = message.partition() or 0, message.offset() or 0
    try:
        payload: object = codec.decode(message.value()).payload
        problem = f"not a DeadLetter on the dead-letter topic: {type(payload).__name__}"
    except DecodeError as error:
        payload, problem = None, f"the dead-letter record itself cannot be decoded: {error}"
    letter = payload if isinstance(payload, DeadLetter) else DeadLetter(
        dlq_topic, partition, offset, "", problem, message.key(), message.value(), 0)
    task_id, tenant = attribution(codec, letter)
    index.record(dlq_topic, partition, offset, letter, task_id, tenant)
