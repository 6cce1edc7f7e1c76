"""The Avro codec: every payload type round-trips; bad bytes fail with a reason."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

import pytest

from tasksaga.adapters.avro_codec import DEFAULT_CONTRACTS_DIR, AvroCodec, DecodeError
from tasksaga.adapters.avro_schemas import build_schemas
from tasksaga.adapters.wire import MESSAGE_SCHEMAS, Envelope
from tasksaga.core import messages as msg

SAMPLES: dict[Any, Any] = {str: "x", int: 7, bool: True, float: 0.5, bytes: b"\x00\xff"}


def sample(cls: type[Any]) -> Any:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        annotation = hints[field.name]
        args = typing.get_args(annotation)
        if type(None) in args:
            annotation = next(a for a in args if a is not type(None))
        if annotation is msg.TimerKind:
            values[field.name] = msg.TimerKind.STEP_RETRY
        elif typing.get_origin(annotation) is list:
            item = typing.get_args(annotation)[0]
            values[field.name] = [SAMPLES[item] if item in SAMPLES else sample(item)]
        elif typing.get_origin(annotation) is dict:
            values[field.name] = {"k": "v"}
        else:
            values[field.name] = SAMPLES[annotation]
    return cls(**values)


ALL_PAYLOADS = [t for _, types in MESSAGE_SCHEMAS for t in types]


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    return AvroCodec()


@pytest.mark.parametrize("payload_type", ALL_PAYLOADS, ids=lambda t: t.__name__)
def test_every_payload_type_round_trips(codec: AvroCodec, payload_type: type[Any]) -> None:
    envelope = Envelope(payload=sample(payload_type), message_id="m", task_id="t",
                        correlation_id="c", causation_id="k", occurred_at_ms=1, task_type="T",
                        version=3)
    assert codec.decode(codec.encode(envelope)) == envelope


def test_messages_are_single_object_encoded(codec: AvroCodec) -> None:
    data = codec.encode(Envelope(msg.CancelTask("t", "r", 1), "m", "t", "c", None, 1))
    assert data[:2] == b"\xc3\x01"


@pytest.mark.parametrize("garbage", [b"", b"hello", b"\xc3\x01" + b"\x00" * 8 + b"x", None])
def test_garbage_is_refused_with_a_reason(codec: AvroCodec, garbage: bytes | None) -> None:
    with pytest.raises(DecodeError):
        codec.decode(garbage)


def test_a_truncated_body_is_refused(codec: AvroCodec) -> None:
    data = codec.encode(Envelope(msg.CancelTask("t", "reason", 1), "m", "t", "c", None, 1))
    with pytest.raises(DecodeError, match="corrupt"):
        codec.decode(data[:-5])


def test_contracts_on_disk_match_the_message_classes() -> None:
    for stem, schema in build_schemas().items():
        on_disk = json.loads((DEFAULT_CONTRACTS_DIR / f"{stem}.avsc").read_text())
        assert on_disk == schema, f"contracts/{stem}.avsc is stale: run tools/generate_contracts.py"


def _old_contracts(tmp_path: Path, drop_field: str) -> tuple[Path, dict[str, Any]]:
    contracts = tmp_path / "contracts"
    (contracts / "history").mkdir(parents=True)
    for path in DEFAULT_CONTRACTS_DIR.glob("*.avsc"):
        (contracts / path.name).write_text(path.read_text())
    old = json.loads((DEFAULT_CONTRACTS_DIR / "task_command.avsc").read_text())
    submit = next(t for t in old["fields"][0]["type"] if t["name"] == "SubmitTask")
    submit["fields"] = [f for f in submit["fields"] if f["name"] != drop_field]
    (contracts / "history" / "task_command.v0.avsc").write_text(json.dumps(old))
    return contracts, old


def _encode_with(schema: dict[str, Any], payload: dict[str, Any]) -> bytes:
    import io

    from fastavro import parse_schema, schemaless_writer
    from fastavro.schema import fingerprint, to_parsing_canonical_form

    body = io.BytesIO()
    schemaless_writer(body, parse_schema(schema), {
        "payload": ("tasksaga.v1.SubmitTask", payload),
        "message_id": "m", "task_id": "t", "correlation_id": "c", "causation_id": None,
        "occurred_at_ms": 5, "task_type": "", "version": 0,
    })
    canonical = to_parsing_canonical_form(parse_schema(schema, _write_hint=False))
    return b"\xc3\x01" + bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")) + body.getvalue()


SUBMIT: dict[str, Any] = {
    "task_id": "t", "task_type": "T", "request_json": "{}", "callback_url": None,
    "idempotency_key": None, "submitted_at_ms": 5, "api_steps": [],
}


def test_a_message_from_an_older_schema_decodes_with_the_new_fields_defaulted(
    tmp_path: Path,
) -> None:
    contracts, old = _old_contracts(tmp_path, "callback_url")
    payload = {k: v for k, v in SUBMIT.items() if k != "callback_url"}
    decoded = AvroCodec(contracts).decode(_encode_with(old, payload))
    assert isinstance(decoded.payload, msg.SubmitTask)
    assert decoded.payload.callback_url is None


def test_an_incompatible_older_schema_is_refused_not_guessed(tmp_path: Path) -> None:
    contracts, old = _old_contracts(tmp_path, "request_json")  # required, no default
    payload = {k: v for k, v in SUBMIT.items() if k != "request_json"}
    with pytest.raises(DecodeError):
        AvroCodec(contracts).decode(_encode_with(old, payload))


def _contracts_with(tmp_path: Path, file: str, edit: typing.Callable[[Any], None]) -> Path:
    import shutil

    copy = tmp_path / "contracts"
    shutil.copytree(DEFAULT_CONTRACTS_DIR, copy)
    schema = json.loads((copy / file).read_text())
    edit(schema)
    (copy / file).write_text(json.dumps(schema))
    return copy


def _branch(schema: Any, name: str) -> Any:
    payload = next(f for f in schema["fields"] if f["name"] == "payload")
    return next(b for b in payload["type"] if isinstance(b, dict) and b["name"] == name)


def test_a_schema_record_with_other_fields_than_its_class_fails_when_the_codec_loads(
        tmp_path: Path) -> None:
    def drop_reason(schema: Any) -> None:
        record = _branch(schema, "TaskFailed")
        record["fields"] = [f for f in record["fields"] if f["name"] != "reason"]

    contracts = _contracts_with(tmp_path, "task_event.avsc", drop_reason)
    with pytest.raises(ValueError, match=r"TaskFailed has fields .* regenerate contracts"):
        AvroCodec(contracts)


def test_a_nested_record_with_other_fields_than_its_class_fails_too(tmp_path: Path) -> None:
    def rename_in_api_steps(schema: Any) -> None:
        field = next(f for f in _branch(schema, "SubmitTask")["fields"]
                     if f["name"] == "api_steps")
        item = field["type"]["items"]
        item["fields"][0]["name"] = "renamed"

    contracts = _contracts_with(tmp_path, "task_command.avsc", rename_in_api_steps)
    with pytest.raises(ValueError, match="renamed"):
        AvroCodec(contracts)
