"""Archived tasks through the API: ``POST /tasks/{task_id}/restore`` brings an archived task's
history back for audit (operators of the task's type; 404 like any task they may not see).

Through the API rather than the database so that a restore is authorized like every other
action on a task (tenant, type, role), and needs no database or object-store credentials on
the operator's machine. ``tasksaga-archive`` (adapters/archive_cli.py) does the same from a
host that has them, and runs the archiver itself.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException

from tasksaga.adapters.archive_format import ArchiveCorrupt
from tasksaga.api.dependencies import Deps
from tasksaga.api.queries import archive_document
from tasksaga.api.security import Caller
from tasksaga.api.task_access import authorized_task
from tasksaga.core.authorization import Action


def add_archive_routes(app: FastAPI) -> None:
    @app.post("/tasks/{task_id}/restore")
    def restore(task_id: str, caller: Caller, d: Deps) -> dict[str, Any]:
        authorized_task(d, caller, task_id, Action.OPERATE)
        archive = d.queries.archive(task_id)
        if archive is None:
            raise HTTPException(409, f"task {task_id} is not archived: its history is in the "
                                     "event log")
        if d.archiver is None:
            raise HTTPException(503, "this API replica has no archive store configured")
        try:
            events = d.archiver.restore(task_id)
        except ArchiveCorrupt as error:
            raise HTTPException(502, f"the archive of task {task_id} failed its check and "
                                     f"was not restored: {error}") from error
        restored = d.queries.archive(task_id)
        return {"task_id": task_id, "restored_events": events,
                "archived": archive_document(restored or archive),
                "audit_url": f"/tasks/{task_id}/audit",
                "note": "the audit reads the restored history once the projector has it "
                        "(usually within a second)"}
