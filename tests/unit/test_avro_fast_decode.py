"""The codec's fast decode (no schema resolution for the current writer, per-class builders)
reads what the generic path reads: fastavro resolving the writer schema to the reader schema,
then a field-by-field walk of the type hints (the codec's former decoder, kept here as the
reference), for every payload type under the current schemas and under every retired one in
contracts/history/."""

from __future__ import annotations

import dataclasses
import enum
import io
import json
import typing
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from tasksaga.adapters.avro_codec import DEFAULT_CONTRACTS_DIR, HEADER_LENGTH, MAGIC, AvroCodec
from tasksaga.adapters.avro_schemas import NAMESPACE
from tasksaga.adapters.wire import MESSAGE_SCHEMAS, Envelope
from tests.unit.test_avro_codec import sample

SCHEMA_FILES = {name: f"{file}.avsc" for name, file in (
    ("TaskCommandMessage", "task_command"), ("TaskEventMessage", "task_event"),
    ("StepCommandMessage", "step_command"), ("StepResultMessage", "step_result"),
    ("DeadLetterMessage", "dead_letter"), ("WebhookDeliveryMessage", "webhook_delivery"))}


def reference_convert(annotation: Any, value: Any) -> Any:
    if value is None:
        return None
    args = typing.get_args(annotation)
    if type(None) in args:
        (annotation,) = [a for a in args if a is not type(None)]
        args = typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return annotation(value)
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return reference_record(annotation, value)
    if typing.get_origin(annotation) is list and isinstance(args[0], type) \
            and dataclasses.is_dataclass(args[0]):
        return [reference_record(args[0], v) for v in value]
    return value


def reference_record(cls: type[Any], body: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    return cls(**{name: reference_convert(hints[name], value) for name, value in body.items()})


def reference_decode(data: bytes, writer: dict[str, Any], reader: dict[str, Any],
                     types: dict[str, type[Any]]) -> Envelope:
    """Always resolving (the reader a separate, equal-valued copy), no cipher."""
    record = schemaless_reader(io.BytesIO(data[HEADER_LENGTH:]), parse_schema(writer),
                               parse_schema(json.loads(json.dumps(reader))),
                               return_record_name=True)
    assert isinstance(record, dict)
    name, body = record.pop("payload")
    return Envelope(payload=reference_record(types[name], body), **record)


def to_record(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_record(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [to_record(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def typed(value: Any) -> Any:
    """``value`` with the type of every part beside it (a str is equal to a StrEnum member,
    a dict to a record's fields: the comparison must see them apart)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return type(value), {f.name: typed(getattr(value, f.name))
                             for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [typed(v) for v in value]
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    return type(value), value


def encode_with(schema: dict[str, Any], envelope: Envelope) -> bytes:
    """``envelope`` written with ``schema`` (fields it lacks are left out, as an old writer
    never had them)."""
    record = to_record(envelope)
    record["payload"] = (f"{NAMESPACE}.{type(envelope.payload).__name__}", record["payload"])
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(schema), record)
    canonical = to_parsing_canonical_form(parse_schema(schema, _write_hint=False))
    return MAGIC + bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")) + body.getvalue()


def union_names(schema: dict[str, Any]) -> set[str]:
    payload = next(f for f in schema["fields"] if f["name"] == "payload")
    return {t["name"] if isinstance(t, dict) else t for t in payload["type"]}


CASES = [
    (path, message, payload_type)
    for message, payload_types in MESSAGE_SCHEMAS
    for path in [DEFAULT_CONTRACTS_DIR / SCHEMA_FILES[message],
                 *sorted((DEFAULT_CONTRACTS_DIR / "history").glob(
                     SCHEMA_FILES[message].replace(".avsc", ".v*.avsc")))]
    for payload_type in payload_types
    if payload_type.__name__ in {n.rsplit(".", 1)[-1]
                                 for n in union_names(json.loads(path.read_text()))}
]


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    return AvroCodec()


def test_every_message_schema_and_version_is_covered() -> None:
    assert {message for message, _ in MESSAGE_SCHEMAS} == set(SCHEMA_FILES)
    assert {path for path, _, _ in CASES} == {
        *DEFAULT_CONTRACTS_DIR.glob("*.avsc"), *(DEFAULT_CONTRACTS_DIR / "history").glob("*.avsc")}


@pytest.mark.parametrize(("path", "message", "payload_type"), CASES,
                         ids=lambda v: v.name if isinstance(v, Path) else
                         getattr(v, "__name__", str(v)))
def test_the_fast_decode_reads_what_the_resolving_decode_reads(
        codec: AvroCodec, path: Path, message: str, payload_type: type[Any]) -> None:
    writer = json.loads(path.read_text())
    reader = json.loads((DEFAULT_CONTRACTS_DIR / SCHEMA_FILES[message]).read_text())
    envelope = Envelope(payload=sample(payload_type), message_id="m", task_id="t",
                        correlation_id="c", causation_id="k", occurred_at_ms=1,
                        task_type="T", version=3)
    data = encode_with(writer, envelope)
    types = {f"{NAMESPACE}.{t.__name__}": t for _, ts in MESSAGE_SCHEMAS for t in ts}
    assert typed(codec.decode(data)) == typed(reference_decode(data, writer, reader, types))
