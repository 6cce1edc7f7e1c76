"""Schema evolution, checked mechanically for every retired schema in contracts/history/.

Backward: anything a retired writer schema wrote is readable by the current reader schema (old
events in the log, old messages still in Kafka). Forward: anything the current schema writes,
using payload types the retired schema knew, is readable by a reader still on the retired
schema (a service not yet upgraded during a rolling deploy).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.utils import generate_many

from tasksaga.adapters.avro_codec import DEFAULT_CONTRACTS_DIR

HISTORY = sorted((DEFAULT_CONTRACTS_DIR / "history").glob("*.avsc"))


def _current_for(retired: dict[str, Any]) -> dict[str, Any]:
    for path in DEFAULT_CONTRACTS_DIR.glob("*.avsc"):
        schema: dict[str, Any] = json.loads(path.read_text())
        if schema["name"] == retired["name"]:
            return schema
    raise AssertionError(f"retired schema {retired['name']} has no current schema")


def _payload_names(schema: dict[str, Any]) -> set[str]:
    payload = next(f for f in schema["fields"] if f["name"] == "payload")
    return {f"{branch['namespace']}.{branch['name']}" for branch in payload["type"]}


def _round_trip(writer: Any, reader: Any, datum: Any) -> Any:
    buffer = io.BytesIO()
    schemaless_writer(buffer, writer, datum)
    buffer.seek(0)
    return schemaless_reader(buffer, writer, reader, return_record_name=True)


def test_there_is_history_to_check() -> None:
    assert HISTORY, "contracts/history/ holds the schemas events in the log were written with"


@pytest.mark.parametrize("path", HISTORY, ids=lambda p: p.name)
def test_the_current_schema_reads_what_a_retired_schema_wrote(path: Path) -> None:
    retired = json.loads(path.read_text())
    old, new = parse_schema(retired), parse_schema(_current_for(retired))
    for datum in generate_many(retired, 200):
        _round_trip(old, new, datum)


@pytest.mark.parametrize("path", HISTORY, ids=lambda p: p.name)
def test_a_retired_reader_reads_what_the_current_schema_writes_with_known_types(
    path: Path,
) -> None:
    retired = json.loads(path.read_text())
    current = _current_for(retired)
    known = _payload_names(retired)
    old, new = parse_schema(retired), parse_schema(current)
    checked = 0
    for datum in generate_many(current, 400):
        name, _ = _round_trip(new, new, datum)["payload"]
        if name not in known:
            continue  # a payload type added since: old readers dead-letter it, by design
        _round_trip(new, old, datum)
        checked += 1
    assert checked > 0


@pytest.mark.parametrize("current", sorted(DEFAULT_CONTRACTS_DIR.glob("*.avsc")),
                         ids=lambda p: p.stem)
def test_every_current_schema_is_saved_in_the_history(current: Path) -> None:
    """Records written today (the log, Kafka, the golden histories) must stay readable after
    the next change: the codec finds their writer schema by fingerprint in contracts/ or
    contracts/history/, so the current schema must be saved there too."""
    saved = [p.name for p in HISTORY if p.read_text() == current.read_text()]
    assert saved, (f"contracts/{current.name} is not in contracts/history/: copy it there as "
                   f"{current.stem}.v<next>.avsc")
