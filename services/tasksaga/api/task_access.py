"""The one way a route reaches a task: found, its type deployed, the caller allowed the action.

Missing, hidden (another tenant's) and undeployed tasks all answer the same 404, so a caller
learns nothing of tasks it may not see.
"""

from __future__ import annotations

from tasksaga.api.dependencies import ApiDependencies
from tasksaga.api.queries import TaskRow
from tasksaga.api.security import not_found
from tasksaga.core.authorization import Action, Principal, TaskRef
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.registry import UnknownTaskType


def authorized_task(d: ApiDependencies, caller: Principal, task_id: str,
                    action: Action) -> tuple[TaskRow, TaskDefinition]:
    """The task's row and definition if the caller may take ``action`` on it."""
    row = d.queries.task(task_id)
    if row is None:
        raise not_found(task_id)
    try:
        definition = d.registry.get(row.task_type)
    except UnknownTaskType:
        raise not_found(task_id) from None
    d.security.require(caller, action, row.task_type, definition.roles,
                       TaskRef(row.task_id, row.task_type, row.tenant, row.submitted_by))
    return row, definition
