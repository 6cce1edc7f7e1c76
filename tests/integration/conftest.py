from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool

from localrun import drop_database, local_payload_cipher
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.migrations import apply_migrations
from tasksaga.adapters.pg_store import PostgresEventStore, open_pool
from tasksaga.adapters.wire import Envelope
from tasksaga.core import events as ev
from tests.integration.http_receivers import QuietHandler, port_of, serving
from tests.integration.notifier_support import Receiver
from tests.integration.shard_support import second_cluster

pytestmark = pytest.mark.integration


@contextmanager
def fresh_database(stack_env: dict[str, str], prefix: str) -> Iterator[str]:
    """A database of this test alone on the stack's Postgres, migrated; dropped afterwards."""
    shared = stack_env["TASKSAGA_DATABASE_URL"]
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(shared, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = shared.rsplit("/", 1)[0] + "/" + name
    try:
        apply_migrations(url)
        yield url
    finally:
        drop_database(shared, name)


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


# A stream's first event written by hand, as the store writes it (the stream's opening in
# `streams`, its partition key copied from there): parameters (task id, message id, payload).
OPEN_STREAM_BY_HAND = (
    "WITH opened AS (INSERT INTO streams (stream_id, opened_at) VALUES (%(task)s, now())"
    " RETURNING opened_at) INSERT INTO events (stream_id, stream_opened_at, version, event_type,"
    " message_id, payload) SELECT %(task)s, opened_at, 1, 'TaskSubmitted', %(message)s,"
    " %(payload)s FROM opened"
)


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


# -- the notifier's tests: a private schema, recording webhook receivers --------------------------
# In a schema of its own (search_path), a test's deliveries are invisible to any other notifier
# sharing the stack — say an end-to-end run with a different secret — which could claim them.


@pytest.fixture
def schema_url(database_url: str) -> Iterator[str]:
    """The stack's database, but every table in a fresh schema of this test's own."""
    schema = f"notifier_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in database_url else "?"
    url = f"{database_url}{separator}options={quote(f'-csearch_path={schema}')}"
    try:
        apply_migrations(url)
        yield url
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def schema_pool(schema_url: str) -> Iterator[ConnectionPool]:
    pool = open_pool(schema_url, max_size=4, name="notifier-tests")
    yield pool
    pool.close()


@pytest.fixture
def receiver_factory() -> Iterator[Callable[[int], tuple[Receiver, str]]]:
    """Starts receivers that answer 500 to the first ``failures`` POSTs of each delivery."""
    with ExitStack() as servers:

        def start(failures: int) -> tuple[Receiver, str]:
            receiver = Receiver(failures)

            class Handler(QuietHandler):
                def do_POST(self) -> None:
                    body = self.read_body()
                    self.answer(receiver.answer(dict(self.headers.items()), body))

            server = servers.enter_context(serving(Handler))
            return receiver, f"http://127.0.0.1:{port_of(server)}/hooks/tasks"

        yield start


@pytest.fixture(scope="session")
def second_pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second, throwaway PostgreSQL cluster for the sharding tests (tests/integration/
    shard_support.py): started on first use, stopped at the end of the session."""
    with second_cluster(tmp_path_factory.mktemp("pg-shard") / "stack") as url:
        yield url
