"""A task whose definition version is not deployed is projected as VersionMissing, its
status naming the version, and back to Running once migrated (the projector against the
real Postgres)."""

from __future__ import annotations

import pytest
from psycopg_pool import ConnectionPool

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.pg_store import PostgresEventStore
from tasksaga.adapters.projections import Projector
from tasksaga.core import events as ev
from tests.integration.conftest import new_task_id, submitted
from tests.integration.test_pivot_projection import envelope
from tests.integration.test_projection_gap import project_until

pytestmark = pytest.mark.integration


def test_a_parked_task_is_projected_with_its_version_until_it_is_migrated(
    pool: ConnectionPool, codec: AvroCodec, store: PostgresEventStore,
) -> None:
    task_id = new_task_id()
    with store.transaction() as tx:
        tx.append(task_id, 0, [
            submitted(task_id, task_type="FulfilOrder"),
            envelope(task_id, 2, ev.TaskVersionMissing(1, [2, 3], 5)),
            envelope(task_id, 3, ev.MessageParked("StepSucceeded", "AAAA", 5)),
        ])
    projector = Projector(pool, codec)
    project_until(projector, pool, {task_id: 3})
    with pool.connection() as conn:
        row = conn.execute("SELECT status, end_reason FROM task_status WHERE task_id = %s",
                           (task_id,)).fetchone()
        line = conn.execute("SELECT summary FROM audit_entries WHERE task_id = %s AND"
                            " version = 2", (task_id,)).fetchone()
    assert row is not None and row[0] == "VersionMissing"
    assert row[1].startswith("version 1 of FulfilOrder is not deployed (deployed: [2, 3])")
    assert line is not None and line[0].startswith("parked: version 1 of the task's definition")

    with store.transaction() as tx:
        tx.append(task_id, 3, [envelope(task_id, 4, ev.TaskMigrated(1, 3, "sha256:x",
                                                                    "operator migrate", 6))])
    project_until(projector, pool, {task_id: 4})
    with pool.connection() as conn:
        row = conn.execute("SELECT status, end_reason FROM task_status WHERE task_id = %s",
                           (task_id,)).fetchone()
    assert row == ("Running", None)
