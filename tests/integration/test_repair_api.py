"""Dead letters and the orphan sweep on the real Postgres, Kafka and MinIO: the routes are for
operators only and tenant-scoped, a replay happens once unless asked again, and a sweep
deletes only what its report named and is still unreferenced."""

from __future__ import annotations

import uuid
from io import BytesIO

import pytest
from confluent_kafka import Consumer, TopicPartition
from psycopg_pool import ConnectionPool

from tasksaga.adapters.dead_letters import DeadLetterIndex
from tasksaga.adapters.orphan_sweep import OrphanSweeper, SweepBusy, SweepTooEarly
from tasksaga.adapters.topics import ensure_topics
from tasksaga.adapters.wire import DeadLetter, Topics
from tasksaga.api.repair_access import RepairServices
from tests.integration.inprocess_api import bearer, inprocess_api, object_store

pytestmark = pytest.mark.integration
OPERATOR = "tasksaga:operator"


def test_dead_letters_are_scoped_to_their_tenant_and_replayed_once(
    stack_env: dict[str, str], kafka_bootstrap: str, topic_prefix: str, pool: ConnectionPool,
) -> None:
    topics = Topics(topic_prefix)
    source = f"{topic_prefix}.replay-target"
    ensure_topics(kafka_bootstrap, [source, topics.task_commands], 1)
    tenant = f"dl{uuid.uuid4().hex[:6]}"
    with inprocess_api(stack_env, kafka_bootstrap, topic_prefix) as (client, deps):
        index = DeadLetterIndex(pool)
        deps.repair = RepairServices(index, OrphanSweeper(pool, object_store(stack_env)))
        letter = DeadLetter(source, 0, 4, "g", "handler failed: boom", b"k", b"the value", 1,
                            {"traceparent": "00-cd"})
        index.record(topics.dead_letter, 0, 1, letter, None, tenant)
        index.record(topics.dead_letter, 0, 2, letter, None, None)  # no tenant known
        mine = client.get("/dead-letters", headers=bearer(tenant, OPERATOR)).json()
        [listed] = mine["dead_letters"]
        letter_id = listed["id"]
        assert client.get("/dead-letters", headers=bearer(tenant)).status_code == 403
        assert client.get(f"/dead-letters/{letter_id}",
                          headers=bearer("someone-else", OPERATOR)).status_code == 404
        everyone = client.get("/dead-letters", headers=bearer(
            "platform", "tasksaga:platform-operator")).json()["dead_letters"]
        assert len(everyone) == 2
        assert client.get("/dead-letters", params={"reason": "nothing like it"},
                          headers=bearer(tenant, OPERATOR)).json()["dead_letters"] == []

        first = client.post(f"/dead-letters/{letter_id}/replay",
                            headers=bearer(tenant, OPERATOR))
        second = client.post(f"/dead-letters/{letter_id}/replay",
                             headers=bearer(tenant, OPERATOR))
        third = client.post(f"/dead-letters/{letter_id}/replay", params={"again": "true"},
                            headers=bearer(tenant, OPERATOR))
        shown = client.get(f"/dead-letters/{letter_id}",
                           headers=bearer(tenant, OPERATOR)).json()
    assert first.status_code == 202, first.text
    assert second.status_code == 409 and "again=true" in second.json()["detail"]
    assert third.status_code == 202 and third.json()["replay_count"] == 2
    assert shown["replay_count"] == 2 and shown["replayed_by"] == "u"
    records = read(kafka_bootstrap, source, 2)
    assert records == [(b"k", b"the value", [("traceparent", b"00-cd")])] * 2


Record = tuple[bytes | None, bytes | None, object]


def read(bootstrap: str, topic: str, count: int) -> list[Record]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        out: list[Record] = []
        while len(out) < count and (message := consumer.poll(5.0)) is not None:
            out.append((message.key(), message.value(), message.headers()))
        extra = consumer.poll(0.5)  # and nothing more
        return out + ([] if extra is None else [(extra.key(), extra.value(), None)])
    finally:
        consumer.close()


def test_a_sweep_keeps_what_became_referenced_after_its_report(
    stack_env: dict[str, str], pool: ConnectionPool,
) -> None:
    objects = object_store(stack_env)
    bucket = f"sweep-{uuid.uuid4().hex[:8]}"
    objects.ensure_bucket(bucket)
    tenant = f"sw{uuid.uuid4().hex[:6]}"
    late, lost = str(uuid.uuid4()), str(uuid.uuid4())
    for task_id in (late, lost):
        objects.put_stream(bucket, f"{tenant}/{task_id}/f.bin", BytesIO(b"data"))
    sweeper = OrphanSweeper(pool, objects)
    sweep_id, findings = sweeper.report(tenant, [bucket], 168.0, "ops")
    assert {f.verdict.task_id for f in findings} == {late, lost}
    with pytest.raises(SweepTooEarly):
        sweeper.sweep(tenant, sweep_id, 3600.0, "ops")
    with pool.connection() as conn:  # its submission got through after all
        conn.execute("INSERT INTO accepted_tasks (task_id, tenant, task_type, request_json)"
                     " VALUES (%s, %s, 'CreateZip', '{}')", (late, tenant))
    with pool.connection() as conn:  # a sweep under way elsewhere
        conn.execute("UPDATE orphan_sweeps SET sweep_started_at = now() WHERE sweep_id = %s",
                     (sweep_id,))
    with pytest.raises(SweepBusy):
        sweeper.sweep(tenant, sweep_id, 0.0, "ops")
    with pool.connection() as conn:  # ... whose process died long ago: taken over
        conn.execute("UPDATE orphan_sweeps SET sweep_started_at = now() - interval '1 hour'"
                     " WHERE sweep_id = %s", (sweep_id,))
    swept = sweeper.sweep(tenant, sweep_id, 0.0, "ops")
    assert {o["task_id"]: o["outcome"] for o in swept["objects"]} == {
        late: "kept: referenced again since the report", lost: "deleted"}
    assert objects.exists(bucket, f"{tenant}/{late}/f.bin")
    assert not objects.exists(bucket, f"{tenant}/{lost}/f.bin")
    assert sweeper.sweep_document("another-tenant", sweep_id) is None
