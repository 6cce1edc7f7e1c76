"""The orchestrator, projector and API queries over two Postgres shards on two real clusters
(tests/integration/shard_support.py): a task's rows stay on its shard, timers fire on both,
status by id reads the task's shard and a list merges both, paging stably."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from io import BytesIO

import pytest

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.orphan_sweep import OrphanSweeper
from tasksaga.adapters.payload_crypto import column_context
from tasksaga.adapters.pg_shards import ShardedEventStore
from tasksaga.adapters.projections import Projector
from tasksaga.adapters.wire import Envelope, Topics
from tasksaga.api.live.feed import PostgresEventLog
from tasksaga.api.queries import ProjectionQueries, TaskFilter
from tasksaga.api.shard_queries import ShardedQueries
from tasksaga.core import RetryPolicy
from tasksaga.core import messages as msg
from tasksaga.core.registry import TaskRegistry
from tasksaga.orchestrator.processor import Orchestrator
from tests.integration.inprocess_api import object_store
from tests.integration.shard_support import two_shard_store
from tests.port_contracts.event_store import task_on
from tests.unit.sagas import Req, linear

pytestmark = pytest.mark.integration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self, _tx: object) -> int:
        return self.now


@pytest.fixture
def store(database_url: str, second_pg_url: str,
          codec: AvroCodec) -> Iterator[ShardedEventStore]:
    with two_shard_store(database_url, second_pg_url, codec) as store:
        yield store


def _envelope(payload: object, task_id: str) -> Envelope:
    return Envelope(payload=payload, message_id=str(uuid.uuid4()), task_id=task_id,
                    correlation_id=task_id, causation_id=None, occurred_at_ms=0)


def _streams(store: ShardedEventStore, shard: str) -> set[str]:
    with store.pool(shard).connection() as conn:
        return {row[0] for row in conn.execute("SELECT stream_id FROM streams").fetchall()}


def test_tasks_on_two_shards_run_fire_timers_and_are_queried_by_id_and_in_a_merged_list(
    store: ShardedEventStore, codec: AvroCodec,
) -> None:
    clock = FakeClock()
    task = linear(1, retry=RetryPolicy(max_retries=3, delay_ms=5_000))
    task.name = f"Sharded{uuid.uuid4().hex[:6]}"
    orchestrator = Orchestrator(TaskRegistry([task]), store, codec, Topics("shard-test"),
                                clock, lambda: 0.0)
    tasks = {"alpha": [task_on(store, "alpha"), task_on(store, "alpha")],
             "beta": [task_on(store, "beta")]}
    every = [t for ids in tasks.values() for t in ids]
    # One batch with tasks of both shards: one transaction per shard.
    orchestrator.handle_batch([_envelope(msg.SubmitTask(
        t, task.name, Req().model_dump_json(), None, None, clock.now), t) for t in every])
    for shard, ids in tasks.items():
        assert _streams(store, shard) == set(ids)  # each stream on its own shard only

    # Every task's first attempt fails: a retry timer on each shard, fired by one loop.
    orchestrator.handle_batch([_envelope(msg.StepAttemptFailed(t, "S1", 1, "Boom", "x", True),
                                         t) for t in every])
    assert orchestrator.fire_due_timers() == 0
    clock.now += 5_000
    assert orchestrator.fire_due_timers() == 3
    for shard, ids in tasks.items():
        for task_id in ids:
            with store.transaction(shard) as tx:
                assert tx.load_state(task_id).step("S1").attempt == 2
        with store.pool(shard).connection() as conn:
            keys = {bytes(r[0]).decode() for r in conn.execute(
                "SELECT key FROM outbox WHERE key IS NOT NULL").fetchall()}
        assert {key.split(":")[0] for key in keys} == set(ids)  # its tasks' records only

    for shard in store.shard_names():
        assert Projector(store.pool(shard), codec).catch_up() > 0
    queries = ShardedQueries(store.shards, {
        shard: ProjectionQueries(store.pool(shard), codec.cipher)
        for shard in store.shard_names()})
    for task_id in every:
        row = queries.task(task_id)
        assert row is not None and row.task_id == task_id and row.version > 0
    live = PostgresEventLog(store.pool("alpha"), codec,
                            lambda task_id: store.pool(store.shard_of(task_id)))
    beta_task = tasks["beta"][0]
    assert live._events_from(beta_task, 1, 100)  # a watcher replays it from its own shard
    assert live._progress(beta_task) == []
    where = TaskFilter(tenant="default", task_types=[task.name])
    assert queries.count_tasks(where) == 3
    whole = [r["task_id"] for r in queries.list_tasks(where, 10)]
    assert sorted(whole) == sorted(every)
    paged: list[str] = []
    before: tuple[datetime, str] | None = None
    for _ in range(3):  # the last row of a page is the cursor of the next, as the API's
        page = queries.list_tasks(where, 1, before)
        paged += [r["task_id"] for r in page]
        before = (datetime.fromisoformat(page[-1]["submitted_at"]), page[-1]["task_id"])
    assert paged == whole and queries.list_tasks(where, 1, before) == []


def test_an_orphan_report_looks_tasks_up_on_every_shard(
    store: ShardedEventStore, stack_env: dict[str, str],
) -> None:
    objects = object_store(stack_env)
    bucket = f"sweep-{uuid.uuid4().hex[:8]}"
    objects.ensure_bucket(bucket)
    tenant = f"sw{uuid.uuid4().hex[:6]}"
    known, lost = str(uuid.uuid4()), str(uuid.uuid4())
    for task_id in (known, lost):
        objects.put_stream(bucket, f"{tenant}/{task_id}/f.bin", BytesIO(b"data"))
    with store.pool("beta").connection() as conn:  # accepted on the second shard
        conn.execute("INSERT INTO accepted_tasks (task_id, tenant, task_type, request_json)"
                     " VALUES (%s, %s, 'CreateZip', '{}')", (known, tenant))
    home = store.pool("alpha")
    every_shard = OrphanSweeper(home, objects, [store.pool(s) for s in store.shard_names()])
    _, findings = every_shard.report(tenant, [bucket], 168.0, "ops")
    assert {f.verdict.task_id for f in findings} == {lost}
    _, first_only = OrphanSweeper(home, objects).report(tenant, [bucket], 168.0, "ops")
    assert {f.verdict.task_id for f in first_only} == {known, lost}  # what it would have swept


def test_a_status_document_reads_children_on_their_shards_and_deliveries_on_the_first(
    store: ShardedEventStore, codec: AvroCodec,
) -> None:
    parent, child, upstream_of = (task_on(store, "beta"), task_on(store, "alpha"),
                                  task_on(store, "alpha"))
    cipher = codec.cipher
    request = cipher.seal("{}", column_context(parent, "task_status.request_json"))
    with store.pool("beta").connection() as conn:  # the parent and its child step's record
        conn.execute("INSERT INTO task_status (task_id, task_type, status, version,"
                     " request_json, submitted_at, updated_at)"
                     " VALUES (%s, 'Parent', 'Running', 3, %s, now(), now())",
                     (parent, request))
        conn.execute("INSERT INTO step_records (task_id, step, status, child_task_id,"
                     " updated_at) VALUES (%s, 'Child', 'Running', %s, now())", (parent, child))
    with store.pool("alpha").connection() as conn:  # its child, its downstream task, and the
        for task_id, task_type, parent_step in ((child, "Kid", "Child"),  # notifier's rows
                                                (upstream_of, "After", None)):
            conn.execute("INSERT INTO task_status (task_id, task_type, status, version,"
                         " request_json, submitted_at, updated_at, parent_task_id,"
                         " parent_step) VALUES (%s, %s, 'Completed', 2, '{}', now(), now(),"
                         " %s, %s)", (task_id, task_type, parent, parent_step))
        conn.execute("INSERT INTO webhook_deliveries (delivery_id, attempt, task_id, url,"
                     " event_type, status_code, outcome) VALUES (%s, 1, %s,"
                     " 'https://hooks.example/t', 'TaskStarted', 200, 'delivered')",
                     (str(uuid.uuid4()), parent))
    queries = ShardedQueries(store.shards, {
        shard: ProjectionQueries(store.pool(shard), codec.cipher)
        for shard in store.shard_names()})
    row = queries.task(parent)
    assert row is not None
    document = queries.status_document(row, None)
    assert document["children"] == [{"step": "Child", "task_id": child, "task_type": "Kid",
                                     "status": "Completed"}]
    assert document["downstream"] == [{"task_id": upstream_of, "task_type": "After",
                                       "status": "Completed"}]
    assert [(d["event_type"], d["outcome"]) for d in document["notifications"]] == [
        ("TaskStarted", "delivered")]
