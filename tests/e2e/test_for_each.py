"""task.for_each across the four processes: a 1,000-item fan-out with a trivial handler, the
thumbnail example failing at a page (its thumbnails deleted in reverse page order), and a
2 x 2 matrix whose instances show their cells."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tasksaga.adapters.object_store import MinioObjectStore
from tasksaga_examples.page_thumbnails import BUCKET
from tests.e2e.checks import log_problems
from tests.e2e.conftest import System, running_system


@pytest.fixture(scope="module")
def fan_outs(stack_env: dict[str, str]) -> Iterator[System]:
    with running_system(
            stack_env,
            TASKSAGA_TASK_MODULES="tasksaga_examples.page_thumbnails,tests.e2e.fan_out_tasks",
            TASKSAGA_WORKER_CONCURRENCY="8") as running:
        yield running


def test_a_1000_item_fan_out_runs_every_instance_and_reads_the_results_in_order(
        fan_outs: System) -> None:
    started = time.monotonic()
    reply = fan_outs.client.post("/tasks/FanOutE2E", json={"count": 1000})
    assert reply.status_code == 202, reply.text
    task_id = reply.json()["task_id"]
    status = fan_outs.wait_terminal(task_id, timeout_s=120)
    print(f"\n1,000-item fan-out end to end: {time.monotonic() - started:.1f} s")
    assert status["status"] == "Completed", status
    assert status["response"] == {"count": 1000, "in_order": True,
                                  "total": sum(n * n for n in range(1000))}
    each = next(s for s in status["steps"] if s["step"] == "SquareEach")
    assert each["status"] == "Completed"
    assert each["instances"]["total"] == 1000
    assert each["instances"]["counts"] == {"Completed": 1000}
    assert [i["index"] for i in each["instances"]["detail"]] == list(range(1000))
    assert not any(s["step"].startswith("SquareEach[") for s in status["steps"])
    lines = [e["summary"] for e in fan_outs.client.get(f"/tasks/{task_id}/audit").json()[
        "entries"]]
    assert len(lines) < 20, lines
    assert "step SquareEach expanded into 1000 instances (SquareEach[0] to SquareEach[999])" \
        in lines
    assert log_problems(fan_outs.env["TASKSAGA_DATABASE_URL"], [task_id]) == []


def test_a_page_failing_for_good_deletes_the_thumbnails_written_in_reverse_page_order(
        fan_outs: System) -> None:
    document = "\f".join(f"page {n} of {uuid.uuid4().hex[:6]}" for n in range(12))
    reply = fan_outs.client.post("/tasks/PageThumbnails",
                                 json={"document": document, "fail_page": 9})
    assert reply.status_code == 202, reply.text
    task_id = reply.json()["task_id"]
    status = fan_outs.wait_terminal(task_id, timeout_s=90)
    assert status["status"] == "Failed", status
    each = next(s for s in status["steps"] if s["step"] == "ThumbnailEach")
    assert each["error_type"] == "FanOutFailed"
    detail = {i["index"]: i for i in each["instances"]["detail"]}
    assert detail[9]["status"] == "Failed" and "page 9 cannot be rendered" in detail[9]["error"]
    compensated = [i for i, d in detail.items() if d["status"] == "Compensated"]
    assert compensated and 9 not in compensated
    entries = fan_outs.client.get(f"/tasks/{task_id}/audit").json()["entries"]
    assert any("FanOutFailed: " in e["summary"] and "ThumbnailEach[9]" in e["summary"]
               for e in entries)
    env = fan_outs.env
    store = MinioObjectStore(env["TASKSAGA_S3_ENDPOINT"], env["TASKSAGA_S3_ACCESS_KEY"],
                             env["TASKSAGA_S3_SECRET_KEY"])
    for number in range(12):
        assert not store.exists(BUCKET, f"{task_id}/thumbs/{number:05d}.txt")
        assert not store.exists(BUCKET, f"{task_id}/pages/{number:05d}.txt")
    assert log_problems(env["TASKSAGA_DATABASE_URL"], [task_id]) == []


def test_a_two_by_two_matrix_runs_each_cell_once_and_the_status_names_the_cells(
        fan_outs: System) -> None:
    started = time.monotonic()
    reply = fan_outs.client.post("/tasks/MatrixE2E", json={"video": "v"})
    assert reply.status_code == 202, reply.text
    task_id = reply.json()["task_id"]
    status = fan_outs.wait_terminal(task_id, timeout_s=60)
    print(f"\n2 x 2 matrix end to end: {time.monotonic() - started:.1f} s")
    assert status["status"] == "Completed", status
    assert status["response"] == {"keys": ["v/720p.h264", "v/720p.av1", "v/1080p.h264",
                                           "v/1080p.av1"]}
    transcode = next(s for s in status["steps"] if s["step"] == "Transcode")
    assert [(i["index"], i["cell"], i["status"]) for i in transcode["instances"]["detail"]] == [
        (0, "height=720,codec=h264", "Completed"), (1, "height=720,codec=av1", "Completed"),
        (2, "height=1080,codec=h264", "Completed"), (3, "height=1080,codec=av1", "Completed")]
    assert log_problems(fan_outs.env["TASKSAGA_DATABASE_URL"], [task_id]) == []
