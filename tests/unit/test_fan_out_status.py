"""The status document's for_each entry: instances grouped under their step, counted."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tasksaga.api.fan_out_status import instances_document, take_instances
from tests.unit.fan_out_sagas import fan_out
from tests.unit.test_fan_out_matrix_kit import renditions, transcoding


def record(step: str, status: str, attempt: int = 1, error: str | None = None) -> dict[str, Any]:
    return {"step": step, "status": status, "attempt": attempt, "compensation_attempt": 0,
            "data_json": None, "error_type": "Boom" if error else None, "error_message": error,
            "completion_rank": None, "updated_at": datetime.now(UTC), "trace_id": None,
            "waiting_until": None}


def test_instance_records_leave_the_step_list_and_are_counted_under_their_step() -> None:
    records = {"Prepare": record("Prepare", "Completed"),
               "Each": record("Each", "Running"),
               "Each[10]": record("Each[10]", "Pending", attempt=0),
               "Each[2]": record("Each[2]", "Failed", error="bad page"),
               "Each[0]": record("Each[0]", "Running", attempt=2)}
    progress = {"Each[0]": {"step": "Each[0]", "attempt": 2, "progress": 0.5,
                            "message": "half", "reported_at": None}}
    records_updated_at = {name: r["updated_at"] for name, r in records.items()}
    taken = take_instances(fan_out(), records)
    assert sorted(records) == ["Each", "Prepare"]
    document = instances_document(taken["Each"], progress, "Each")
    assert document["total"] == 3
    assert document["counts"] == {"Failed": 1, "Pending": 1, "Running": 1}
    assert [line["index"] for line in document["detail"]] == [0, 2, 10]
    assert document["detail"][0] == {
        "index": 0, "status": "Running", "attempt": 2, "progress": 0.5,
        "progress_message": "half", "updated_at": records_updated_at["Each[0]"].isoformat()}
    assert document["detail"][1]["error"] == "Boom: bad page"


def test_instances_that_never_started_show_not_run_once_their_step_has_closed() -> None:
    entries = [(0, record("Each[0]", "Completed")), (1, record("Each[1]", "Pending", 0))]
    assert [line["status"] for line in instances_document(entries, {}, "Each", "Running")[
        "detail"]] == ["Completed", "Pending"]
    closed = instances_document(entries, {}, "Each", "Completed")
    assert closed["counts"] == {"Completed": 1, "NotRun": 1}


def test_each_instance_of_a_static_matrix_shows_its_cell() -> None:
    records = {f"Render[{i}]": record(f"Render[{i}]", "Completed") for i in range(4)}
    taken = take_instances(transcoding({"height": [720, 1080], "codec": ["h264", "av1"]}),
                           dict(records))
    assert [line["cell"] for line in instances_document(taken["Render"], {}, "Render")[
        "detail"]] == ["height=720,codec=h264", "height=720,codec=av1",
                       "height=1080,codec=h264", "height=1080,codec=av1"]
    # From the request, the cells are only known once the step expanded: no cell shown.
    taken = take_instances(transcoding(renditions), dict(records))
    assert ["cell" in line for line in instances_document(taken["Render"], {}, "Render")[
        "detail"]] == [False] * 4
