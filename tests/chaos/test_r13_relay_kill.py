"""R13: the outbox relay dies between the broker's acknowledgement and the delete of its rows.

The next relay publishes those rows again: duplicates reach the topics, by design. None may be
applied twice: no duplicated transition in any log, no effect made twice, no compensation run
twice.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import Consumer

from localrun import local_payload_cipher
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.wire import Topics
from tests.chaos.harness import chaos_system, figure, not_terminal, pick

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]


def test_relay_killed_after_publish_before_delete_duplicates_records_applies_none_twice(
    stack_env: dict[str, str],
) -> None:
    kills = pick(reduced=3, full=20)
    with chaos_system(stack_env) as chaos:
        with chaos.load(rate_per_s=5.0, sleep_ms=20, fail_last=False):
            time.sleep(2.0)
            chaos.kill("orchestrator")
            for index in range(kills):
                chaos.services.start("orchestrator", {
                    "TASKSAGA_FAULT_POINTS": f"after_produce_before_delete:kill@{3 + index}"})
                if not chaos.wait_exit("orchestrator", timeout_s=40):
                    raise AssertionError("the relay never reached its fault point")
            chaos.services.start("orchestrator")
            failing = [chaos.submit(sleep_ms=20, fail_last=True) for _ in range(5)]
        accepted = list(chaos.accepted)
        statuses = chaos.settle(accepted, timeout_s=180)
        log = chaos.log_problems(accepted)
        ledger = chaos.ledger(accepted)
        duplicates = _duplicated_records(stack_env["TASKSAGA_KAFKA_BOOTSTRAP"],
                                         Topics(chaos.prefix))

    failed = {t for t in failing if t is not None}
    figure("R13", kills=kills, tasks=len(accepted), not_terminal=len(not_terminal(statuses)),
           duplicates_published=duplicates,
           log_problems=len(log), doubled_effects=len(ledger.doubled_effects()),
           doubled_compensations=len(ledger.doubled_effects("compensate")),
           same_key_reruns=ledger.same_key_reruns())
    assert not_terminal(statuses) == {}
    assert duplicates > 0, "the kills should have republished records (else R13 tested nothing)"
    assert log == []
    assert ledger.doubled_effects() == []
    assert ledger.doubled_effects("compensate") == []
    assert {statuses[t] for t in failed} == {"Failed"}
    assert ledger.uncompensated(failed) == []


def _duplicated_records(bootstrap: str, topics: Topics) -> int:
    """Records on the relay's topics whose message id an earlier record already had."""
    codec = AvroCodec(cipher=local_payload_cipher())
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r13-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.partition.eof": True})
    consumer.subscribe([topics.task_events, topics.step_commands("chaos")])
    seen: Counter[str] = Counter()
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < 5.0:
        message = consumer.poll(0.5)
        if message is None or message.error() is not None:
            continue
        idle_since = time.monotonic()
        seen[codec.decode(message.value()).message_id] += 1
    consumer.close()
    return sum(n - 1 for n in seen.values())
