"""Retries are durable timers in Postgres: a restarted orchestrator fires each exactly once."""

from __future__ import annotations

import threading
import uuid

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.pg_store import PostgresEventStore
from tasksaga.adapters.wire import Envelope, Topics
from tasksaga.core import messages as msg
from tasksaga.core.registry import TaskRegistry
from tasksaga.orchestrator.processor import Orchestrator
from tests.unit.sagas import Req, linear


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self, _tx: object) -> int:
        return self.now


def _orchestrator(store: PostgresEventStore, codec: AvroCodec, clock: FakeClock) -> Orchestrator:
    from tasksaga.core import RetryPolicy

    task = linear(1, retry=RetryPolicy(max_retries=3, delay_ms=5_000))
    task.name = f"Timers{uuid.uuid4().hex[:6]}"
    return Orchestrator(TaskRegistry([task]), store, codec, Topics("timers-test"), clock,
                        lambda: 0.0)


def _envelope(payload: object, task_id: str) -> Envelope:
    return Envelope(payload=payload, message_id=str(uuid.uuid4()), task_id=task_id,
                    correlation_id=task_id, causation_id=None, occurred_at_ms=0)


def test_a_scheduled_retry_survives_a_restart_and_fires_exactly_once(
    store: PostgresEventStore, codec: AvroCodec,
) -> None:
    clock = FakeClock()
    first = _orchestrator(store, codec, clock)
    task_type = next(iter(first._registry)).name
    task_id = f"timers-{uuid.uuid4()}"
    first.handle(_envelope(msg.SubmitTask(task_id, task_type, Req().model_dump_json(), None,
                                          None, clock.now), task_id))
    first.handle(_envelope(msg.StepAttemptFailed(task_id, "S1", 1, "Boom", "x", True), task_id))
    assert first.fire_due_timers() == 0  # not due yet

    # The first orchestrator is gone; two new instances race for the due timer.
    clock.now += 5_000
    instances = [_orchestrator(store, codec, clock) for _ in range(2)]
    for instance in instances:
        instance._registry = first._registry
    fired: list[int] = []
    threads = [threading.Thread(target=lambda o=o: fired.append(o.fire_due_timers()))
               for o in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    with store.transaction() as tx:
        events = [type(e.payload).__name__ for e in tx.load_events(task_id)]
    assert events.count("StepDispatched") == 2  # attempt 1, then exactly one retry
    assert events[-1] == "StepDispatched"
    with store.transaction() as tx:
        state = tx.load_state(task_id)
    assert state.step("S1").attempt == 2
