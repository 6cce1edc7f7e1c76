"""A task left to an operator after its pivot is projected as NeedsAttention: status, the
failed step, the reason and the audit line (the projector against the real Postgres)."""

from __future__ import annotations

import pytest
from psycopg_pool import ConnectionPool

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.pg_store import PostgresEventStore
from tasksaga.adapters.projections import Projector
from tasksaga.adapters.wire import Envelope
from tasksaga.core import events as ev
from tests.integration.conftest import new_task_id, submitted
from tests.integration.test_projection_gap import project_until

pytestmark = pytest.mark.integration


def envelope(task_id: str, version: int, event: ev.TaskEvent) -> Envelope:
    return Envelope(payload=event, message_id=f"{task_id}:{version}", task_id=task_id,
                    correlation_id=task_id, causation_id=None,
                    occurred_at_ms=1_700_000_001_000 + version, task_type="FulfilOrder",
                    version=version)


def test_needs_attention_is_projected_with_the_failed_step_and_nothing_compensated(
    pool: ConnectionPool, codec: AvroCodec, store: PostgresEventStore,
) -> None:
    stopped, builder = new_task_id(), new_task_id()
    for task_id, failure in ((stopped, ev.TaskNeedsAttention("Notify", "Ship", "ServiceOutage",
                                                             "down", 3, "trace-1")),
                             (builder, ev.TaskNeedsAttention("", "Ship", "KeyError", "'x'", 3))):
        with store.transaction() as tx:
            tx.append(task_id, 0, [
                submitted(task_id, task_type="FulfilOrder"),
                envelope(task_id, 2, ev.StepCompleted("Ship", 1, "{}", 1)),
                envelope(task_id, 3, ev.StepFailed("Notify", 1, "ServiceOutage", "down",
                                                   False, 2, "trace-1")),
                envelope(task_id, 4, failure),
            ])
    project_until(Projector(pool, codec), pool, {stopped: 4, builder: 4})
    with pool.connection() as conn:
        rows = {r[0]: r[1:] for r in conn.execute(
            "SELECT task_id, status, failed_step, error_trace_id, end_reason FROM task_status"
            " WHERE task_id = ANY(%s)", ([stopped, builder],))}
        line = conn.execute("SELECT summary FROM audit_entries WHERE task_id = %s AND"
                            " version = 4", (stopped,)).fetchone()
    assert rows[stopped] == ("NeedsAttention", "Notify", "trace-1",
                             "step Notify failed after the pivot Ship: ServiceOutage: down; "
                             "nothing was compensated")
    assert rows[builder][:2] == ("NeedsAttention", None)  # no step to name
    assert line is not None and line[0].startswith(
        "needs attention: step Notify failed after the pivot Ship; nothing was compensated")
