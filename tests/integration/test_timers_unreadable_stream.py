"""A due timer of a task whose stream cannot be read (a key missing from the ring, a corrupt
event) is postponed with an error in the log; it does not crash the timers thread (which
stopped the orchestrator, on every restart) nor block the other timers."""

from __future__ import annotations

import uuid

from psycopg_pool import ConnectionPool

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.pg_store import PostgresEventStore
from tasksaga.core import RetryPolicy
from tasksaga.core import messages as msg
from tasksaga.core.registry import TaskRegistry
from tasksaga.orchestrator.processor import UNREADABLE_TIMER_DELAY_MS, Orchestrator
from tests.integration.conftest import OPEN_STREAM_BY_HAND
from tests.integration.test_durable_timers import FakeClock, _envelope
from tests.unit.sagas import Req, linear


def test_an_unreadable_stream_postpones_its_timer_and_the_others_fire(
    pool: ConnectionPool, store: PostgresEventStore, codec: AvroCodec,
) -> None:
    from tasksaga.adapters.wire import Topics

    task = linear(1, retry=RetryPolicy(max_retries=3, delay_ms=5_000))
    task.name = f"Unreadable{uuid.uuid4().hex[:6]}"
    clock = FakeClock()
    orchestrator = Orchestrator(TaskRegistry([task]), store, codec, Topics("unreadable-test"),
                                clock, lambda: 0.0)
    healthy, broken = f"ok-{uuid.uuid4()}", f"broken-{uuid.uuid4()}"
    orchestrator.handle(_envelope(msg.SubmitTask(healthy, task.name, Req().model_dump_json(),
                                                 None, None, clock.now), healthy))
    orchestrator.handle(_envelope(msg.StepAttemptFailed(healthy, "S1", 1, "Boom", "x", True),
                                  healthy))
    with pool.connection() as conn:
        conn.execute(OPEN_STREAM_BY_HAND, {"task": broken, "message": f"{broken}:1",
                                           "payload": b"\xc3\x01not-an-event"})
        # Due before the healthy task's retry, so it is the first one claimed.
        conn.execute("INSERT INTO timers (task_id, kind, step, attempt, fire_at_ms, task_type)"
                     " VALUES (%s, %s, 'S1', 1, %s, %s)",
                     (broken, msg.TimerKind.STEP_TIMEOUT.value, clock.now, task.name))
    clock.now += 5_000

    assert orchestrator.fire_due_timers() >= 1, "the healthy task's retry fired"
    with store.transaction() as tx:
        events = [type(e.payload).__name__ for e in tx.load_events(healthy)]
        due_in = tx._conn.execute(
            "SELECT fire_at_ms - %s FROM timers WHERE task_id = %s",
            (tx.database_now_ms(), broken)).fetchone()
    assert events.count("StepDispatched") == 2
    assert due_in is not None and 0 < due_in[0] <= UNREADABLE_TIMER_DELAY_MS
    with pool.connection() as conn:
        conn.execute("DELETE FROM timers WHERE task_id = %s", (broken,))
        conn.execute("DELETE FROM projection_queue WHERE stream_id = %s", (broken,))
