"""The orphan sweep's rule (pure): which objects no live task references."""

from __future__ import annotations

import uuid

from tasksaga.core.orphans import StoredObject, TaskRecord, judge, task_ids_in, tenant_of_key

HOUR = 3_600_000
NOW = 1_000 * HOUR
TASK = str(uuid.uuid4())


def verdict_for(status: str | None, key: str = f"acme/{TASK}/a.txt", ended_h_ago: float = 1,
                retention_h: float = 24) -> tuple[bool, str] | None:
    tasks = {} if status is None else {
        TASK: TaskRecord(TASK, "acme", status, NOW - int(ended_h_ago * HOUR))}
    verdict = judge(StoredObject("b", key, 4), tasks, NOW, int(retention_h * HOUR))
    return None if verdict is None else (verdict.garbage, verdict.reason)


def test_keys_name_their_task_as_uploads_and_step_outputs_do() -> None:
    assert task_ids_in(f"acme/{TASK}/a.txt") == [TASK]
    assert task_ids_in(f"{TASK}/archive.zip") == [TASK]
    assert task_ids_in("notes/readme.txt") == []
    assert tenant_of_key(f"acme/{TASK}/a.txt") == "acme"
    assert tenant_of_key(f"{TASK}/archive.zip") is None


def test_objects_of_running_or_operator_waiting_tasks_are_referenced() -> None:
    for status in ("Accepted", "Running", "Compensating", "CompensationFailed",
                   "NeedsAttention", "VersionMissing"):
        assert verdict_for(status) == (False, f"task is {status}")


def test_objects_of_compensated_tasks_are_garbage_at_once() -> None:
    for status in ("Failed", "Cancelled"):
        assert verdict_for(status, ended_h_ago=0) == (
            True, f"task ended {status}: compensated, nothing reads it")


def test_results_are_kept_for_the_retention_then_are_garbage() -> None:
    assert verdict_for("Completed", ended_h_ago=23) == (
        False, "task ended Completed within the retention")
    assert verdict_for("Resolved", ended_h_ago=25) == (
        True, "task ended Resolved 25 h ago, past the retention of 24 h")


def test_an_object_whose_task_never_existed_is_garbage_and_one_naming_none_is_not_judged(
) -> None:
    garbage, reason = verdict_for(None)  # type: ignore[misc]
    assert garbage and reason.startswith(f"no task has id {TASK}")
    assert verdict_for(None, key="exports/2026/report.csv") is None
