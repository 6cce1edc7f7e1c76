"""The step worker on a real broker: results are re-sent, never re-computed; odd failures never
stall it; oversized results fail clearly; stale commands are skipped; offsets are committed
as results are acknowledged; a revoked partition's steps stop and stay unanswered."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import DeliveryFailed, KafkaProducer
from tasksaga.adapters.wire import Topics
from tasksaga.core import messages as msg
from tasksaga.worker.guard import CommandGuard
from tests.integration import worker_probe as probe
from tests.integration.worker_probe import ProbeRequest


@pytest.fixture
def topics(kafka_bootstrap: str, topic_prefix: str) -> Iterator[Topics]:
    topics = Topics(topic_prefix)
    probe.ensure_probe_topics(kafka_bootstrap, topics)
    probe.EXECUTIONS.clear()
    yield topics


def _executions(task_id: str) -> int:
    return sum(1 for task, _ in probe.EXECUTIONS if task == task_id)


class FlakyResults(KafkaProducer):
    """The broker refuses the first ``failures`` result sends (the worker must send again)."""

    def __init__(self, bootstrap: str, results_topic: str, failures: int) -> None:
        super().__init__(bootstrap, "flaky-results")
        self._results_topic = results_topic
        self.failures_left = failures

    def _fail(self, topic: str) -> None:
        if topic == self._results_topic and self.failures_left > 0:
            self.failures_left -= 1
            raise DeliveryFailed(topic, "injected: not acknowledged")

    def send_and_wait(self, topic: str, key: bytes | None, value: bytes,
                      headers: object = (), timeout_s: float | None = None) -> None:
        self._fail(topic)
        super().send_and_wait(topic, key, value, headers, timeout_s)  # type: ignore[arg-type]


def test_a_failed_result_send_is_resent_without_running_the_step_again(
    kafka_bootstrap: str, codec: AvroCodec, topics: Topics
) -> None:
    flaky = FlakyResults(kafka_bootstrap, topics.step_results, failures=2)
    worker = probe.in_process_worker(kafka_bootstrap, codec, topics, producer=flaky).start()
    try:
        probe.send(flaky, codec, topics, probe.command("t-resend", ProbeRequest()))
        results = probe.results_of(probe.read_envelopes(kafka_bootstrap, codec,
                                                        topics.step_results, 1))
    finally:
        worker.close()
    assert [type(r) for r in results] == [msg.StepSucceeded]
    assert results[0].fencing_token == 1  # the lease of the command, echoed
    assert _executions("t-resend") == 1
    assert worker.runner.results.resends == 2 and flaky.failures_left == 0


def test_handlers_raising_odd_exceptions_never_hold_a_slot(
    kafka_bootstrap: str, codec: AvroCodec, topics: Topics
) -> None:
    producer = KafkaProducer(kafka_bootstrap, "odd")
    worker = probe.in_process_worker(kafka_bootstrap, codec, topics, concurrency=1).start()
    modes = ["system_exit", "base_exception", "unencodable", "system_exit", "ok"]
    try:
        for index, mode in enumerate(modes):  # one partition key: one after the other
            probe.send(producer, codec, topics, probe.command(f"t-odd-{index}",
                                                              ProbeRequest(mode=mode)))
        results = probe.results_of(probe.read_envelopes(kafka_bootstrap, codec,
                                                        topics.step_results, len(modes)))
    finally:
        worker.close()
    by_task = {r.task_id: r for r in results}
    assert len(results) == len(modes)  # answered once each, the last one included
    assert by_task["t-odd-0"].error_type == "SystemExit" and by_task["t-odd-0"].retryable
    assert by_task["t-odd-1"].error_type == "OddBaseException"
    assert by_task["t-odd-2"].error_type == "ResultEncodingFailed"
    assert not by_task["t-odd-2"].retryable
    assert isinstance(by_task["t-odd-4"], msg.StepSucceeded)
    assert len(probe.EXECUTIONS) == worker.runner.executions == len(modes)  # none ran twice


def test_a_loop_handler_that_raises_a_base_exception_dead_letters_and_moves_on(
    kafka_bootstrap: str, codec: AvroCodec, topics: Topics
) -> None:
    """Below the runner: whatever escapes a handler frees its slot and offset."""
    producer = KafkaProducer(kafka_bootstrap, "raw")
    worker = probe.in_process_worker(kafka_bootstrap, codec, topics, concurrency=1)
    handled: list[str] = []

    def handler(envelope: object, _lease: object) -> bool:
        task_id = envelope.task_id  # type: ignore[attr-defined]
        handled.append(task_id)
        if task_id.startswith("t-poison"):
            raise probe.OddBaseException("escaped the runner")
        return True

    worker.loop._leased_handler = handler
    worker.start()
    try:
        for task_id in ("t-poison-1", "t-poison-2", "t-fine"):
            probe.send(producer, codec, topics, probe.command(task_id, ProbeRequest()))
        letters = probe.read_envelopes(kafka_bootstrap, codec, topics.dead_letter, 2)
        deadline = time.monotonic() + 20
        while "t-fine" not in handled and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.close()
    assert handled == ["t-poison-1", "t-poison-2", "t-fine"]
    assert len(letters) == 2
    assert all("OddBaseException" in e.payload.reason for e in letters)


def test_a_result_over_the_size_limit_fails_the_attempt_for_good(
    kafka_bootstrap: str, codec: AvroCodec, topics: Topics
) -> None:
    producer = KafkaProducer(kafka_bootstrap, "huge")
    worker = probe.in_process_worker(kafka_bootstrap, codec, topics,
                                     max_result_bytes=10_000).start()
    try:
        probe.send(producer, codec, topics,
                   probe.command("t-huge", ProbeRequest(mode="huge", size=50_000)))
        (result,) = probe.results_of(probe.read_envelopes(kafka_bootstrap, codec,
                                                          topics.step_results, 1))
    finally:
        worker.close()
    assert isinstance(result, msg.StepAttemptFailed)
    assert result.error_type == "ResultTooLarge" and not result.retryable
    assert "over the limit of 10000 bytes" in result.error_message
    assert _executions("t-huge") == 1


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(partitions)],
                                     timeout=10)
        return sum(max(tp.offset, 0) for tp in offsets)
    finally:
        consumer.close()


def test_expired_superseded_and_duplicate_commands_are_skipped_and_committed(
    kafka_bootstrap: str, codec: AvroCodec, topics: Topics
) -> None:
    now = [int(time.time() * 1000)]
    producer = KafkaProducer(kafka_bootstrap, "skips")
    group = f"skips-{time.monotonic_ns()}"
    worker = probe.in_process_worker(kafka_bootstrap, codec, topics, now_ms=lambda: now[0],
                                     group=group).start()
    try:
        probe.send(producer, codec, topics,
                   probe.command("t-expired", ProbeRequest(),
                                 timeout_at_ms=now[0] - CommandGuard.CLOCK_SKEW_MS - 1))
        probe.send(producer, codec, topics, probe.command("t-newer", ProbeRequest(), attempt=2))
        probe.read_envelopes(kafka_bootstrap, codec, topics.step_results, 1)
        probe.send(producer, codec, topics, probe.command("t-newer", ProbeRequest(), attempt=1))
        for _ in range(2):  # the relay re-sent it: same message id
            probe.send(producer, codec, topics, probe.command("t-dup", ProbeRequest()),
                       message_id="t-dup:cmd")
        probe.send(producer, codec, topics, probe.command("t-last", ProbeRequest()))
        results = probe.results_of(probe.read_envelopes(kafka_bootstrap, codec,
                                                        topics.step_results, 3))
        deadline = time.monotonic() + 10
        while (_committed(kafka_bootstrap, group, topics.step_commands(probe.QUEUE), 2) < 6
               and time.monotonic() < deadline):
            time.sleep(0.2)
        committed = _committed(kafka_bootstrap, group, topics.step_commands(probe.QUEUE), 2)
    finally:
        worker.close()
    assert sorted((r.task_id, r.attempt) for r in results) == [
        ("t-dup", 1), ("t-last", 1), ("t-newer", 2)]
    assert probe.EXECUTIONS.count(("t-dup", 1)) == 1
    assert _executions("t-expired") == 0 and ("t-newer", 1) not in probe.EXECUTIONS
    assert worker.runner.skipped == 3
    assert worker.loop.commits >= 1  # explicit commits: auto-commit is off
    assert committed == 6  # the skipped ones too: nothing is redelivered after a restart


def test_steps_of_a_revoked_partition_stop_and_are_answered_by_the_new_owner_only(
    kafka_bootstrap: str, codec: AvroCodec, topics: Topics
) -> None:
    producer = KafkaProducer(kafka_bootstrap, "revoke")
    group = f"revoke-{time.monotonic_ns()}"
    first = probe.in_process_worker(kafka_bootstrap, codec, topics, concurrency=8,
                                    group=group).start()
    second = probe.in_process_worker(kafka_bootstrap, codec, topics, concurrency=8,
                                     group=group)
    tasks = [f"t-long-{i}" for i in range(6)]  # spread over both partitions
    try:
        for task_id in tasks:
            probe.send(producer, codec, topics,
                       probe.command(task_id, ProbeRequest(mode="sleep", sleep_s=12)))
        deadline = time.monotonic() + 30
        while len(probe.EXECUTIONS) < len(tasks) and time.monotonic() < deadline:
            time.sleep(0.1)
        second.start()  # the group rebalances: one partition moves to the second worker
        envelopes = probe.read_envelopes(kafka_bootstrap, codec, topics.step_results,
                                         len(tasks), timeout_s=90, settle_s=3)
    finally:
        first.close()
        second.close()
    results = probe.results_of(envelopes)
    moved = [t for t in tasks if probe.EXECUTIONS.count((t, 1)) == 2]
    print(f"\n{len(moved)} of {len(tasks)} running steps moved with their partition")
    assert moved, "the rebalance moved no partition with a running step"
    assert sorted(r.task_id for r in results) == sorted(tasks)  # one answer per step
    assert all(isinstance(r, msg.StepSucceeded) for r in results)  # the new owner's
