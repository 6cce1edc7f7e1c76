from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from psycopg_pool import ConnectionPool

from localrun import local_payload_cipher
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.pg_store import PostgresEventStore, open_pool
from tasksaga.adapters.wire import Envelope
from tasksaga.core import events as ev

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def codec() -> AvroCodec:
    return AvroCodec(cipher=local_payload_cipher())  # the services' ring: they share the log


@pytest.fixture(scope="session")
def pool(database_url: str) -> Iterator[ConnectionPool]:
    pool = open_pool(database_url, max_size=6, name="tests")
    yield pool
    pool.close()


@pytest.fixture
def store(pool: ConnectionPool, codec: AvroCodec) -> PostgresEventStore:
    return PostgresEventStore(pool, codec)


def new_task_id() -> str:
    return f"test-{uuid.uuid4()}"


def submitted(task_id: str, version: int = 1, task_type: str = "CreateZip") -> Envelope:
    return Envelope(
        payload=ev.TaskSubmitted(task_id, task_type, "{}", None, None, 1_700_000_000_000, None),
        message_id=f"{task_id}:{version}", task_id=task_id, correlation_id=task_id,
        causation_id=None, occurred_at_ms=1_700_000_000_000, task_type=task_type,
        version=version,
    )


def completed_step(task_id: str, version: int, step: str = "CreateArchive") -> Envelope:
    return Envelope(
        payload=ev.StepCompleted(step, 1, "{}", 1_700_000_000_500),
        message_id=f"{task_id}:{version}", task_id=task_id, correlation_id=task_id,
        causation_id=None, occurred_at_ms=1_700_000_000_500, task_type="CreateZip",
        version=version,
    )
