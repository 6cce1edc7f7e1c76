"""``POST /tasks/{task_id}/migrate?version=N``: move a task parked in VersionMissing (its
definition version is not deployed) to a deployed version.

The API checks what it can see (the caller may operate the task, it is parked, the version is
deployed here); the orchestrator checks that the version is compatible with what the task
recorded and says why not in the audit (``MigrationRefused``) when it is not.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query

from tasksaga.adapters.clock import now_ms
from tasksaga.api.dependencies import Deps
from tasksaga.api.security import Caller
from tasksaga.api.task_access import authorized_task
from tasksaga.core import messages as msg
from tasksaga.core.authorization import Action
from tasksaga.core.state import TaskStatus


def add_migrate_route(app: FastAPI) -> None:
    @app.post("/tasks/{task_id}/migrate", status_code=202)
    def migrate(task_id: str, caller: Caller, d: Deps,
                version: Annotated[int, Query(ge=1)]) -> dict[str, Any]:
        row, _ = authorized_task(d, caller, task_id, Action.OPERATE)
        if row.status != TaskStatus.VERSION_MISSING:
            raise HTTPException(409, f"task {task_id} is {row.status}; only a task in "
                                     "VersionMissing is moved to another version")
        deployed = d.registry.versions(row.task_type)
        if version not in deployed:
            raise HTTPException(409, f"{row.task_type} version {version} is not deployed; "
                                     f"deployed versions: {deployed}")
        d.submit_gate.check()
        d.send_command(msg.MigrateTask(task_id, version, now_ms()),
                       f"migrate:{task_id}:{row.version}:{version}")
        return {"task_id": task_id, "status": f"move to version {version} requested",
                "status_url": f"/tasks/{task_id}",
                "note": "a move the task's log is not compatible with is refused; the audit "
                        "says why"}
