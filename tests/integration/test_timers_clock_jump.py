"""Timers use one clock, the database's, for scheduling and for firing: an orchestrator whose
own clock jumps an hour forward or back fires no timeout, retry or compensation early (R15).

Each orchestrator taking "now" from its own wall clock (the former design) fired every timer
due within the hour at once when its clock jumped forward, and scheduled timers an hour early
for every other orchestrator when it jumped back.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.pg_store import PostgresEventStore
from tasksaga.adapters.wire import Envelope, Topics
from tasksaga.core import RetryPolicy
from tasksaga.core import messages as msg
from tasksaga.core.registry import TaskRegistry
from tasksaga.orchestrator.processor import Orchestrator, database_clock
from tests.unit.sagas import Req, linear

HOUR_NS = 3600 * 10**9
STEP_TIMEOUT_S = 30  # linear()'s step timeout
# An attempt no worker reported started times out after the start timeout plus its own.
DISPATCH_TIMEOUT_S = 300 + STEP_TIMEOUT_S
RETRY_DELAY_MS = 5_000


def _envelope(payload: object, task_id: str) -> Envelope:
    return Envelope(payload=payload, message_id=str(uuid.uuid4()), task_id=task_id,
                    correlation_id=task_id, causation_id=None, occurred_at_ms=0)


def _jump(monkeypatch: pytest.MonkeyPatch, offset_ns: int) -> None:
    """Shift this process's wall clock, as an NTP step or a bad host clock would."""
    real_ns, real = time.time_ns, time.time
    monkeypatch.setattr(time, "time_ns", lambda: real_ns() + offset_ns)
    monkeypatch.setattr(time, "time", lambda: real() + offset_ns / 1e9)


def _timers(store: PostgresEventStore, task_id: str) -> dict[str, int]:
    """The task's timers: kind -> milliseconds until due, by the database's clock."""
    with store.transaction() as tx:
        now = tx.database_now_ms()
        rows = tx._conn.execute("SELECT kind, fire_at_ms FROM timers WHERE task_id = %s",
                                (task_id,)).fetchall()
    return {str(kind): int(fire_at) - now for kind, fire_at in rows}


@pytest.mark.parametrize("offset_ns", [HOUR_NS, -HOUR_NS], ids=["forward", "back"])
def test_a_clock_jump_on_one_orchestrator_fires_nothing_early(
    store: PostgresEventStore, codec: AvroCodec, monkeypatch: pytest.MonkeyPatch, offset_ns: int,
) -> None:
    task = linear(1, retry=RetryPolicy(max_retries=3, delay_ms=RETRY_DELAY_MS))
    task.name = f"Jump{uuid.uuid4().hex[:6]}"
    registry = TaskRegistry([task])
    task_id = f"jump-{uuid.uuid4()}"
    _jump(monkeypatch, offset_ns)
    jumped = Orchestrator(registry, store, codec, Topics("jump-test"), database_clock,
                          lambda: 0.0)
    jumped.handle(_envelope(msg.SubmitTask(task_id, task.name, Req().model_dump_json(), None,
                                           None, time.time_ns() // 10**6), task_id))
    timers = _timers(store, task_id)
    assert timers, "the dispatch scheduled its step timeout"
    assert all(0 < due_in <= DISPATCH_TIMEOUT_S * 1000 for due_in in timers.values()), timers
    assert jumped.fire_due_timers() == 0, "the step timeout fired early"

    jumped.handle(_envelope(msg.StepAttemptFailed(task_id, "S1", 1, "Boom", "x", True),
                            task_id))
    timers = _timers(store, task_id)
    assert 0 < timers["step_retry"] <= RETRY_DELAY_MS, timers
    assert all(0 < due_in <= DISPATCH_TIMEOUT_S * 1000 for due_in in timers.values()), timers
    assert jumped.fire_due_timers() == 0, "the retry fired early"
    with store.transaction() as tx:
        events = [type(e.payload).__name__ for e in tx.load_events(task_id)]
    assert events.count("StepDispatched") == 1 and "StepTimedOut" not in events, events
