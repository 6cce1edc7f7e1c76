"""Payloads encrypted at rest, on the real services: a database dump and a raw read of every
topic show none of the plaintext planted in a request, its step data and its response, while
the API answers it; tasks written under key 1 stay readable once key 2 is current, and a
rebuild of the projections from the log (``tasksaga-replay --rebuild``) keeps working.

The test owns a database of its own (so it can keep a copy of every outbox row, which the
relay deletes once published, and so its keys never reach the shared log) and a topic prefix.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from psycopg import sql

from localrun import BIN, REPO, ServiceProcesses, local_token, service_env
from tests.integration.conftest import fresh_database

pytestmark = pytest.mark.integration

KEY_1 = "crypto1:" + base64.b64encode(os.urandom(32)).decode()
KEY_2 = "crypto2:" + base64.b64encode(os.urandom(32)).decode()


def markers(note: str) -> list[str]:
    """What sealed_task.py derives from the note: request, step data, response."""
    return [note, note[::-1], note.upper()]


@dataclass
class Api:
    client: httpx.Client

    def submit(self, note: str, callback_url: str | None = None) -> str:
        params = {"callback_url": callback_url} if callback_url else {}
        reply = self.client.post("/tasks/SealedNote", json={"note": note}, params=params,
                                 headers={"Idempotency-Key": uuid.uuid4().hex})
        assert reply.status_code == 202, reply.text
        task_id: str = reply.json()["task_id"]
        return task_id

    def completed(self, task_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        status: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            reply = self.client.get(f"/tasks/{task_id}")
            status = reply.json() if reply.status_code == 200 else None
            if status is not None and status["status"] == "Completed" \
                    and status["response"] is not None:
                return dict(status)
            time.sleep(0.2)
        raise AssertionError(f"task {task_id} not completed: {status}")


@pytest.fixture
def private_database(stack_env: dict[str, str]) -> Iterator[str]:
    with fresh_database(stack_env, "tasksaga_crypto") as url:
        with psycopg.connect(url, autocommit=True) as conn:  # every outbox row, for the scan
            conn.execute("CREATE TABLE outbox_capture (LIKE outbox)")
            conn.execute("CREATE FUNCTION capture_outbox() RETURNS trigger LANGUAGE plpgsql AS"
                         " $$ BEGIN INSERT INTO outbox_capture SELECT NEW.*; RETURN NEW; END $$")
            conn.execute("CREATE TRIGGER capture_outbox AFTER INSERT ON outbox"
                         " FOR EACH ROW EXECUTE FUNCTION capture_outbox()")
        yield url


@contextlib.contextmanager
def services(stack_env: dict[str, str], database_url: str, prefix: str, keys: str,
             generation: int) -> Iterator[Api]:
    port = _free_port()
    env = service_env(stack_env, port, TASKSAGA_DATABASE_URL=database_url,
                      TASKSAGA_TOPIC_PREFIX=prefix, TASKSAGA_TOPIC_PARTITIONS="2",
                      TASKSAGA_TASK_MODULES="tests.integration.sealed_task",
                      TASKSAGA_ORCHESTRATOR_INSTANCE_ID=f"{prefix}-orchestrator-0",
                      TASKSAGA_PAYLOAD_KEYS=keys, TASKSAGA_URL_ALLOWLIST="127.0.0.1/32",
                      # The tree under test first: its contracts are the ones read.
                      PYTHONPATH=os.pathsep.join(str(p) for p in (REPO / "services", REPO)))
    processes = ServiceProcesses(env, REPO / ".run" / "crypto-logs" / f"{prefix}-{generation}",
                                 port)
    try:
        processes.start_all()
        token = local_token(subject="crypto-test", secret=env["TASKSAGA_AUTH_HS256_SECRET"])
        with httpx.Client(base_url=processes.api_url, timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            yield Api(client)
    finally:
        processes.stop_all()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- what an attacker with a dump or a raw consumer sees -------------------------------------


def dump_database(database_url: str) -> dict[str, str]:
    """Every row of every table as Postgres prints it (bytea as hex), like a pg_dump."""
    with psycopg.connect(database_url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1")]
        return {
            table: "\n".join(r[0] for r in conn.execute(
                sql.SQL("SELECT ROW(scanned_row.*)::text FROM {} AS scanned_row").format(
                    sql.Identifier(table))))
            for table in tables
        }


def read_topics(bootstrap: str, prefix: str) -> dict[str, list[bytes]]:
    """Every record (key, value, headers) of every topic of the prefix, from the beginning."""
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"scan-{uuid.uuid4()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    records: dict[str, list[bytes]] = {}
    ends: dict[tuple[str, int], int] = {}
    try:
        for topic, info in metadata.topics.items():
            if not topic.startswith(f"{prefix}."):
                continue
            records[topic] = []
            for partition in info.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                           timeout=10)
                if high > low:
                    ends[(topic, partition)] = high
        consumer.assign([TopicPartition(t, p, 0) for t, p in ends])
        deadline = time.monotonic() + 60
        while ends and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            where, part, offset = message.topic(), message.partition(), message.offset()
            assert where is not None and part is not None and offset is not None
            headers = message.headers() or []
            values = headers.values() if isinstance(headers, dict) else [v for _, v in headers]
            parts = [message.key() or b"", message.value() or b""] + [_raw(v) for v in values]
            records[where].append(b"|".join(parts))
            if offset + 1 >= ends.get((where, part), 0):
                ends.pop((where, part), None)
        assert not ends, f"partitions not read to their end: {ends}"
    finally:
        consumer.close()
    return records


def _raw(value: str | bytes | None) -> bytes:
    return value.encode() if isinstance(value, str) else value or b""


def plaintext_found(haystacks: dict[str, str | bytes], needles: list[str]) -> list[str]:
    found = []
    for where, data in haystacks.items():
        text = data if isinstance(data, str) else data.decode("latin-1")
        for needle in needles:
            if needle in text or needle.encode().hex() in text:  # bytea prints as hex
                found.append(f"{needle!r} in {where}")
    return found


def scan(database_url: str, bootstrap: str, prefix: str, needles: list[str]) -> list[str]:
    tables = dump_database(database_url)
    topics = read_topics(bootstrap, prefix)
    assert tables["events"] and tables["outbox_capture"] and tables["pending_webhooks"], \
        "nothing written: the scan proves nothing"
    for topic in ("task-commands", "task-events", "step-commands.sealed", "step-results"):
        assert topics[f"{prefix}.{topic}"], f"no records on {topic}"
    print(f"\nscanned {len(tables)} tables ({sum(map(len, tables.values())):,} chars) and "
          f"{len(topics)} topics ({sum(map(len, topics.values()))} records, "
          f"{sum(len(r) for rs in topics.values() for r in rs):,} bytes)")
    return plaintext_found({**{f"table {t}": d for t, d in tables.items()},
                            **{f"topic {t}": b"\n".join(r) for t, r in topics.items()}},
                           needles)


def test_the_scan_finds_plaintext_wherever_it_is(private_database: str) -> None:
    """The scanner itself: a marker in a text column and in a bytea column is found."""
    with psycopg.connect(private_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE probe (t text, b bytea)")
        conn.execute("INSERT INTO probe VALUES ('x probe-text-marker y', %s)",
                     (b"\x00probe-bytes-marker\xff",))
    found = plaintext_found({"dump": dump_database(private_database)["probe"]},
                            ["probe-text-marker", "probe-bytes-marker", "absent-marker"])
    assert found == ["'probe-text-marker' in dump", "'probe-bytes-marker' in dump"]


def test_no_plaintext_at_rest_and_key_rotation_keeps_old_tasks_readable(
    stack_env: dict[str, str], private_database: str, kafka_bootstrap: str, topic_prefix: str,
) -> None:
    first, second = f"note{uuid.uuid4().hex}", f"note{uuid.uuid4().hex}"

    with services(stack_env, private_database, topic_prefix, KEY_1, 1) as api:
        # A receiver that is down: the notifier keeps the body (the response) queued.
        old_task = api.submit(first, callback_url=f"http://127.0.0.1:{_free_port()}/hook")
        status = api.completed(old_task)
        _wait_for_queued_webhook(private_database, old_task)
    assert status["request"] == {"note": first}  # the authorized reader sees plaintext
    assert status["response"] == {"shout": first.upper(), "stamp": first[::-1]}
    assert scan(private_database, kafka_bootstrap, topic_prefix, markers(first)) == []

    rotated = f"{KEY_2},{KEY_1}"  # crypto2 is current now; crypto1 only decrypts
    with services(stack_env, private_database, topic_prefix, rotated, 2) as api:
        again = api.completed(old_task)
        assert again["request"] == {"note": first}
        assert again["response"] == status["response"]
        assert [s["data"] for s in again["steps"]] == [{"reversed_note": first[::-1]},
                                                       {"seen": first[::-1]}]
        new_task = api.submit(second)
        assert api.completed(new_task)["request"] == {"note": second}

        rebuild = subprocess.run(
            [str(BIN / "tasksaga-replay"), "--rebuild", "--database-url", private_database],
            env={**os.environ, "TASKSAGA_PAYLOAD_KEYS": rotated}, cwd=REPO,
            capture_output=True, text=True, timeout=120)
        assert rebuild.returncode == 0, rebuild.stderr
        print(f"\n{rebuild.stdout.strip()}")
        for task_id, note in ((old_task, first), (new_task, second)):
            assert api.completed(task_id)["response"]["shout"] == note.upper()

    assert scan(private_database, kafka_bootstrap, topic_prefix,
                markers(first) + markers(second)) == []
    key_ids = _key_ids_by_task(private_database, [old_task, new_task])
    assert key_ids == {old_task: {"crypto1"}, new_task: {"crypto2"}}, key_ids


def _wait_for_queued_webhook(database_url: str, task_id: str) -> None:
    deadline = time.monotonic() + 30
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute("SELECT 1 FROM pending_webhooks WHERE task_id = %s"
                            " AND event_type = 'TaskCompleted'", (task_id,)).fetchone():
                return
            time.sleep(0.2)
    raise AssertionError(f"no webhook queued for {task_id}")


def _key_ids_by_task(database_url: str, task_ids: list[str]) -> dict[str, set[str]]:
    """The key ids of the sealed values in each task's events (the log is never rewritten)."""
    found: dict[str, set[str]] = {}
    with psycopg.connect(database_url) as conn:
        for stream_id, payload in conn.execute(
                "SELECT stream_id, payload FROM events WHERE stream_id = ANY(%s)", (task_ids,)):
            for part in bytes(payload).split(b"v1.")[1:]:
                found.setdefault(stream_id, set()).add(part.split(b".")[0].decode())
    return found
