"""Which stored objects no live task references (pure): the rule of the orphan sweep.

The services keep a task's objects under its id: uploads at ``<tenant>/<task id>/...``, step
outputs at ``<task id>/...`` (the examples' convention, and the one the DSL's upload steps
use). An object is **referenced** while its task may still need it:

- the task has not ended, or waits for an operator (CompensationFailed, NeedsAttention,
  VersionMissing): its steps or their compensations may still read or delete it;
- it ended Completed or Resolved less than ``retention`` ago: its outputs are its result.

It is **garbage** when its task ended Failed or Cancelled (compensated: nothing will read it),
ended Completed or Resolved more than ``retention`` ago, or when no task has the id its key
names (a submission that never reached the orchestrator). An object whose key names no task
id is not the services' and is never reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

COMPENSATED_ENDINGS = frozenset({"Failed", "Cancelled"})
RESULT_ENDINGS = frozenset({"Completed", "Resolved"})
# A task id: a UUID in its canonical text form (the core imports no uuid: it generates none).
_TASK_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class StoredObject:
    bucket: str
    key: str
    size: int


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    tenant: str
    status: str  # Accepted (the API's marker) or a TaskStatus value
    updated_at_ms: int  # for an ended task: when it ended


@dataclass(frozen=True)
class Verdict:
    garbage: bool
    reason: str
    task_id: str | None = None
    tenant: str | None = None


def task_ids_in(key: str) -> list[str]:
    """The task ids a key may name: its first two path segments that are UUIDs."""
    return [s for s in key.split("/")[:2] if _TASK_ID.fullmatch(s)]


def tenant_of_key(key: str) -> str | None:
    """An upload's key starts with its tenant: ``<tenant>/<task id>/<file>``."""
    parts = key.split("/")
    if len(parts) >= 3 and task_ids_in("/".join(parts[1:2])) and not task_ids_in(parts[0]):
        return parts[0]
    return None


def judge(obj: StoredObject, tasks: dict[str, TaskRecord], now_ms: int,
          retention_ms: int) -> Verdict | None:
    """The verdict on one object, ``tasks`` holding the records of the ids its key names;
    None when the key names no task id (not the services' object)."""
    ids = task_ids_in(obj.key)
    if not ids:
        return None
    task = next((tasks[i] for i in ids if i in tasks), None)
    if task is None:
        return Verdict(True, f"no task has id {ids[-1]}: its submission never reached the "
                             "orchestrator", ids[-1], tenant_of_key(obj.key))
    if task.status in COMPENSATED_ENDINGS:
        return Verdict(True, f"task ended {task.status}: compensated, nothing reads it",
                       task.task_id, task.tenant)
    if task.status in RESULT_ENDINGS:
        age_ms = now_ms - task.updated_at_ms
        if age_ms >= retention_ms:
            return Verdict(True, f"task ended {task.status} {age_ms // 3_600_000} h ago, past "
                                 f"the retention of {retention_ms / 3_600_000:g} h",
                           task.task_id, task.tenant)
        return Verdict(False, f"task ended {task.status} within the retention", task.task_id,
                       task.tenant)
    return Verdict(False, f"task is {task.status}", task.task_id, task.tenant)
