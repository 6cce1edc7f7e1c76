"""Operator repair on the four services: skip a failed compensation, resolve, redrive a stuck
task, dead letters (list, show, replay, processed), and the orphan sweep (report, then sweep).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupState, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from minio import Minio

from localrun import local_payload_cipher
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.wire import DeadLetter, Envelope, Topics
from tasksaga.core import messages as msg
from tests.e2e.conftest import System, running_system
from tests.e2e.repair_tasks import STUCK_QUEUE

GRACE_S = 1.0


@dataclass
class RepairSystem(System):
    stuck_task: str = ""
    stuck_runs: Path = Path()


@pytest.fixture(scope="module")
def system(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RepairSystem]:
    # The main worker serves RepairChain's queue only. A RepairStuck task is submitted at
    # once and its command lost (its queue's group moved past it) before that queue's worker
    # starts: the stuck task of the redrive test, made while the other tests run.
    with running_system(stack_env, TASKSAGA_TASK_MODULES="tests.e2e.repair_tasks",
                        TASKSAGA_WORKER_QUEUES="repair-e2e",
                        TASKSAGA_API_ORPHAN_GRACE_S=str(GRACE_S)) as running:
        runs = tmp_path_factory.mktemp("stuck") / "runs.txt"
        reply = running.client.post("/tasks/RepairStuck", json={"runs": str(runs)})
        assert reply.status_code == 202, reply.text
        lose_commands(running, Topics(running.prefix).step_commands(STUCK_QUEUE),
                      stuck_group(running))
        running.services.start("worker#2", {"TASKSAGA_WORKER_QUEUES": STUCK_QUEUE})
        yield RepairSystem(running.services, running.client, running.prefix, running.env,
                           reply.json()["task_id"], runs)


def stuck_group(system: System) -> str:
    return f"{system.prefix}-worker-{STUCK_QUEUE}"


def wait_status(system: System, task_id: str, wanted: str, timeout_s: float = 20.0
                ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = system.status(task_id)
        if status is not None and status["status"] == wanted:
            return status
        system.services.check_alive()
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} not {wanted} after {timeout_s} s: "
                         f"{system.status(task_id)}")


def audit(system: System, task_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = system.client.get(f"/tasks/{task_id}/audit").json()[
        "entries"]
    return entries


def compensation_failed(system: System) -> str:
    reply = system.client.post("/tasks/RepairChain",
                               json={"fail_ship": True, "charge_undo_fails": True})
    assert reply.status_code == 202, reply.text
    task_id: str = reply.json()["task_id"]
    status = wait_status(system, task_id, "CompensationFailed")
    assert {s["step"]: s["status"] for s in status["steps"]}["Charge"] == "CompensationFailed"
    return task_id


def test_a_skipped_compensation_lets_the_chain_go_on_and_the_task_fail(system: System) -> None:
    task_id = compensation_failed(system)
    wrong = system.client.post(f"/tasks/{task_id}/skip-compensation",
                               json={"step": "Reserve", "reason": "x"})
    assert wrong.status_code == 409 and "the failed one is Charge" in wrong.json()["detail"]
    reply = system.client.post(f"/tasks/{task_id}/skip-compensation",
                               json={"step": "Charge", "reason": "refunded by hand"})
    assert reply.status_code == 202, reply.text
    status = wait_status(system, task_id, "Failed")
    steps = {s["step"]: s["status"] for s in status["steps"]}
    assert steps == {"Reserve": "Compensated", "Charge": "CompensationSkipped",
                     "Ship": "Failed"}
    lines = [e["summary"] for e in audit(system, task_id)]
    assert "compensation of step Charge skipped by e2e: refunded by hand; its effect stays, " \
           "compensation goes on" in lines
    again = system.client.post(f"/tasks/{task_id}/skip-compensation",
                               json={"step": "Charge", "reason": "again"})
    assert again.status_code == 409 and "is Failed" in again.json()["detail"]


def test_a_resolved_task_ends_resolved_with_the_operator_s_reason(system: System) -> None:
    task_id = compensation_failed(system)
    empty = system.client.post(f"/tasks/{task_id}/resolve", json={"reason": "  "})
    assert empty.status_code == 422
    reply = system.client.post(f"/tasks/{task_id}/resolve",
                               json={"reason": "refund made in the provider's console"})
    assert reply.status_code == 202, reply.text
    status = wait_status(system, task_id, "Resolved")
    assert status["end_reason"] == ("resolved by e2e (was CompensationFailed): refund made in "
                                    "the provider's console")
    assert audit(system, task_id)[-1]["event_type"] == "TaskResolved"
    assert system.client.post(f"/tasks/{task_id}/redrive",
                              json={"reason": "r"}).status_code == 409


def test_a_stuck_task_is_redriven_and_its_step_runs_once(system: RepairSystem) -> None:
    task_id = system.stuck_task
    wait_for_members(system, stuck_group(system))  # its worker runs and saw nothing
    assert system.status(task_id)["status"] == "Running"  # type: ignore[index]
    assert not system.stuck_runs.exists()
    reply = system.client.post(f"/tasks/{task_id}/redrive", json={"reason": "command lost"})
    assert reply.status_code == 202, reply.text
    wait_status(system, task_id, "Completed")
    assert system.stuck_runs.read_text() == "1\n"  # the resent attempt 1, run once
    lines = [e["summary"] for e in audit(system, task_id)]
    assert "redriven by e2e: resent ExecuteStep Hold#1 (command lost)" in lines


def wait_for_members(system: System, group: str, timeout_s: float = 30.0) -> None:
    """Until ``group`` is stable with a member holding partitions (it fetched past them)."""
    admin = AdminClient({"bootstrap.servers": system.env["TASKSAGA_KAFKA_BOOTSTRAP"]})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = admin.describe_consumer_groups([group])[group].result(timeout=10)
        if described.state == ConsumerGroupState.STABLE and any(
                m.assignment.topic_partitions for m in described.members):
            time.sleep(1.0)  # a fetch round after the assignment
            return
        system.services.check_alive()
        time.sleep(0.3)
    raise AssertionError(f"group {group} has no member after {timeout_s} s")


def lose_commands(system: System, topic: str, group: str) -> None:
    """Once the dispatch reached ``topic``, move ``group`` past it, as a reset would."""
    consumer = Consumer({"bootstrap.servers": system.env["TASKSAGA_KAFKA_BOOTSTRAP"],
                         "group.id": group, "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        deadline = time.monotonic() + 15
        while True:
            ends = [TopicPartition(topic, p, consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=5)[1]) for p in partitions]
            if sum(tp.offset for tp in ends) >= 1:
                break
            assert time.monotonic() < deadline, "the dispatch never reached its topic"
            time.sleep(0.2)
        consumer.commit(offsets=ends, asynchronous=False)
    finally:
        consumer.close()


def test_a_dead_letter_is_listed_shown_replayed_once_and_processed(system: System) -> None:
    topics = Topics(system.prefix)
    codec = AvroCodec(cipher=local_payload_cipher())
    task_id = str(uuid.uuid4())
    submit = msg.SubmitTask(task_id, "RepairChain", '{"fail_ship": false}', None, None,
                            int(time.time() * 1000), tenant="default", submitted_by="e2e")
    original = codec.encode(Envelope(submit, f"submit:{task_id}", task_id, task_id, None,
                                     submit.submitted_at_ms))
    letter = DeadLetter(topics.task_commands, 0, 7, f"{system.prefix}-orchestrator",
                        "handler failed: OperationalError: the database was read-only",
                        task_id.encode(), original, submit.submitted_at_ms,
                        {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
    producer = Producer({"bootstrap.servers": system.env["TASKSAGA_KAFKA_BOOTSTRAP"]})
    producer.produce(topics.dead_letter, key=task_id.encode(), value=codec.encode(Envelope(
        letter, f"dlq:{task_id}", task_id, "", None, letter.failed_at_ms)))
    producer.produce(topics.task_commands, key=b"poison", value=b"not avro at all")
    producer.flush(10)

    letter_id = wait_listed(system, "read-only")
    assert wait_listed(system, "C3 01", platform=True)  # the garbage names no tenant
    assert system.client.get("/dead-letters", params={"reason": "C3 01"}).json()[
        "dead_letters"] == []
    shown = system.client.get(f"/dead-letters/{letter_id}").json()
    assert shown["source"] == {"topic": topics.task_commands, "partition": 0, "offset": 7,
                               "consumer_group": f"{system.prefix}-orchestrator"}
    assert shown["headers"]["traceparent"].startswith("00-111")
    assert shown["decoded"]["payload_type"] == "SubmitTask"
    assert shown["decoded"]["payload"]["task_id"] == task_id

    replay = system.client.post(f"/dead-letters/{letter_id}/replay")
    assert replay.status_code == 202, replay.text
    assert replay.json()["replayed_to"] == topics.task_commands
    twice = system.client.post(f"/dead-letters/{letter_id}/replay")
    assert twice.status_code == 409 and "again=true" in twice.json()["detail"]
    assert system.wait_terminal(task_id, 20)["status"] == "Completed"
    assert system.client.get(f"/dead-letters/{letter_id}").json()["replayed_by"] == "e2e"


def wait_listed(system: System, reason: str, platform: bool = False) -> int:
    headers = {"Authorization": f"Bearer {platform_token(system)}"} if platform else {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        page = system.client.get("/dead-letters", params={"reason": reason},
                                 headers=headers).json()["dead_letters"]
        if page:
            letter_id: int = page[0]["id"]
            return letter_id
        time.sleep(0.3)
    raise AssertionError(f"no dead letter with {reason!r} listed")


def platform_token(system: System) -> str:
    from localrun import local_token

    return local_token(subject="platform", roles=("tasksaga:platform-operator",),
                       secret=system.env["TASKSAGA_AUTH_HS256_SECRET"])


def test_orphans_are_reported_then_swept_after_the_grace_period(system: System) -> None:
    env = system.env
    store = Minio(env["TASKSAGA_S3_ENDPOINT"], env["TASKSAGA_S3_ACCESS_KEY"],
                  env["TASKSAGA_S3_SECRET_KEY"], secure=False)
    bucket = f"{system.prefix}-outputs"
    store.make_bucket(bucket)
    failed = system.client.post("/tasks/RepairChain", json={"fail_ship": True}).json()[
        "task_id"]
    completed = system.client.post("/tasks/RepairChain", json={}).json()["task_id"]
    wait_status(system, failed, "Failed")
    wait_status(system, completed, "Completed")
    keys = {"lost": f"default/{uuid.uuid4()}/upload.bin", "failed": f"{failed}/output.bin",
            "completed": f"{completed}/output.bin", "other": f"acme/{uuid.uuid4()}/x.bin",
            "foreign": "README.txt"}
    for key in keys.values():
        store.put_object(bucket, key, BytesIO(b"data"), 4)

    reply = system.client.post("/orphans/reports", params={"bucket": bucket})
    assert reply.status_code == 201, reply.text
    report = reply.json()
    reported = {o["key"]: o["reason"] for o in report["objects"]}
    assert set(reported) == {keys["lost"], keys["failed"]}
    assert reported[keys["failed"]] == "task ended Failed: compensated, nothing reads it"
    early = system.client.post(f"/orphans/reports/{report['sweep_id']}/sweep")
    assert early.status_code == 409 and "at least 1 s old" in early.json()["detail"]
    time.sleep(GRACE_S)
    swept = system.client.post(f"/orphans/reports/{report['sweep_id']}/sweep").json()
    assert {o["key"]: o["outcome"] for o in swept["objects"]} == {
        keys["lost"]: "deleted", keys["failed"]: "deleted"}
    assert swept["swept_by"] == "e2e"
    left = {o.object_name for o in store.list_objects(bucket, recursive=True)}
    assert left == {keys["completed"], keys["other"], keys["foreign"]}

