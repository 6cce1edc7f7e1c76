"""How the status document shows a for_each step: one entry with its instances inside.

A 1,000-item fan-out is one entry of ``steps``, with ``instances``: counts by status, and one
compact line per instance (index, status, attempt, when it last changed, error, progress) in
item order: the fan-out's timeline at a glance (for a static matrix, each line names its cell:
``"cell": "height=720,codec=h264"``). The
instances' data is the step's own ``data`` (the list of results), not repeated per instance.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tasksaga.core.definition import TaskDefinition
from tasksaga.core.fan_out_matrix import static_cell_labels
from tasksaga.core.fan_out_names import parse_instance


def take_instances(definition: TaskDefinition | None, records: dict[str, dict[str, Any]]
                   ) -> dict[str, list[tuple[int, dict[str, Any]]]]:
    """Remove the instance records from ``records``; return them by step, in item order."""
    fan_outs = {s.name: s.for_each for s in definition.steps if s.for_each is not None} \
        if definition else {}
    cells = {name: static_cell_labels(spec.matrix) for name, spec in fan_outs.items()
             if spec.matrix is not None}
    taken: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for name in list(records):
        parsed = parse_instance(name)
        if parsed is not None and parsed[0] in fan_outs:
            record = records.pop(name)
            labels = cells.get(parsed[0])
            if labels is not None and parsed[1] < len(labels):
                record = {**record, "cell": labels[parsed[1]]}
            taken.setdefault(parsed[0], []).append((parsed[1], record))
    for entries in taken.values():
        entries.sort(key=lambda entry: entry[0])
    return taken


def instances_document(entries: list[tuple[int, dict[str, Any]]],
                       progress: dict[str, dict[str, Any]], step: str,
                       step_status: str = "Running") -> dict[str, Any]:
    """``step_status``: the for_each step's own; once it is no longer running, an instance
    that never started never will (``NotRun``, as for a step of an ended task)."""
    closed = step_status not in ("Running", "Pending")
    detail = []
    for index, record in entries:
        status = "NotRun" if closed and record["status"] == "Pending" else record["status"]
        line: dict[str, Any] = {"index": index, "status": status,
                                "attempt": record["attempt"],
                                "updated_at": record["updated_at"].isoformat()}
        if record.get("cell") is not None:
            line["cell"] = record["cell"]
        if record["error_type"]:
            line["error"] = f"{record['error_type']}: {record['error_message']}"
        if record["compensation_attempt"]:
            line["compensation_attempt"] = record["compensation_attempt"]
        if record["trace_id"]:
            line["trace_id"] = record["trace_id"]
        reported = progress.get(f"{step}[{index}]")
        if reported is not None and reported["attempt"] == record["attempt"]:
            line["progress"] = reported["progress"]
            if reported["message"]:
                line["progress_message"] = reported["message"]
        detail.append(line)
    counts = Counter(line["status"] for line in detail)
    return {"total": len(detail), "counts": dict(sorted(counts.items())), "detail": detail}
