"""The compiled writer writes the bytes fastavro's ``schemaless_writer`` writes for the same
record: for every payload type under every schema, for random values of every contract
schema, with sealed payloads, and refuses what it cannot write rather than write it wrong."""

from __future__ import annotations

import functools
import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import given, settings

from tasksaga.adapters.avro_codec import HEADER_LENGTH, AvroCodec
from tasksaga.adapters.avro_schemas import NAMESPACE
from tasksaga.adapters.avro_writer import Unplanned, Writer, compile_writer
from tasksaga.adapters.payload_crypto import KeyRing, PayloadCipher
from tasksaga.adapters.wire import MESSAGE_SCHEMAS, Envelope
from tests.unit.test_avro_codec import sample
from tests.unit.test_avro_fast_decode import CASES, to_record
from tests.unit.test_avro_reader import SCHEMAS, values_of


@functools.cache
def parsed_and_writer(path: Path) -> tuple[Any, Writer]:
    parsed: Any = parse_schema(json.loads(path.read_text()))
    return parsed, compile_writer(parsed)


def fastavro_write(parsed: Any, record: Any) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, parsed, record)
    return buffer.getvalue()


def envelope_of(payload_type: type[Any]) -> Envelope:
    return Envelope(payload=sample(payload_type), message_id="m", task_id="t",
                    correlation_id="c", causation_id=None, occurred_at_ms=-1,
                    task_type="T", version=2**40)


@pytest.mark.parametrize(("path", "message", "payload_type"), CASES,
                         ids=lambda v: v.name if isinstance(v, Path) else
                         getattr(v, "__name__", str(v)))
def test_the_compiled_writer_writes_what_fastavro_writes(
        path: Path, message: str, payload_type: type[Any]) -> None:
    parsed, writer = parsed_and_writer(path)
    record = to_record(envelope_of(payload_type))
    record["payload"] = (f"{NAMESPACE}.{payload_type.__name__}", record["payload"])
    assert writer(record) == fastavro_write(parsed, record)


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.name)
def test_random_values_of_every_schema_are_written_as_fastavro_writes_them(path: Path) -> None:
    parsed, writer = parsed_and_writer(path)

    @settings(max_examples=30, deadline=None)
    @given(values_of(parsed, dict(parsed["__named_schemas"])))
    def check(record: dict[str, Any]) -> None:
        assert writer(record) == fastavro_write(parsed, record)

    check()


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
def test_the_codec_encodes_every_payload_as_fastavro_did_and_reads_it_back(
        sealed: bool) -> None:
    cipher = PayloadCipher(KeyRing({"k1": bytes(range(32))}, "k1") if sealed else None)
    codec = AvroCodec(cipher=cipher)
    for _message, payload_types in MESSAGE_SCHEMAS:
        for payload_type in payload_types:
            envelope = envelope_of(payload_type)
            data = codec.encode(envelope)
            schema, _write = codec._encoders[codec.schema_name_of(envelope)]
            codec._encoders[codec.schema_name_of(envelope)] = (schema, None)  # fastavro's path
            try:
                if not sealed:  # sealing draws a fresh nonce: only the plain bytes repeat
                    assert data == codec.encode(envelope)
            finally:
                codec._encoders[codec.schema_name_of(envelope)] = (schema, _write)
            assert data[:HEADER_LENGTH] == codec.encode(envelope)[:HEADER_LENGTH]
            assert codec.decode(data) == envelope


def test_a_field_left_out_takes_its_default_and_a_nullable_one_null() -> None:
    parsed: Any = parse_schema({"type": "record", "name": "R", "fields": [
        {"name": "a", "type": "long", "default": 7},
        {"name": "b", "type": ["null", "string"]},
        {"name": "c", "type": {"type": "map", "values": "long"}, "default": {}}]})
    assert compile_writer(parsed)({}) == fastavro_write(parsed, {}) == bytes([14, 0, 0])


def test_longs_past_one_byte_and_at_the_limits_are_zig_zag_varints() -> None:
    parsed: Any = parse_schema({"type": "record", "name": "R", "fields": [
        {"name": "n", "type": "long"}]})
    writer = compile_writer(parsed)
    for n in (63, 64, -64, -65, 2**40, -(2**63), 2**63 - 1):
        assert writer({"n": n}) == fastavro_write(parsed, {"n": n})
    with pytest.raises(ValueError, match="does not fit an Avro long"):
        writer({"n": 2**63})


def test_a_wrong_value_is_refused_not_written() -> None:
    parsed: Any = parse_schema({"type": "record", "name": "R", "fields": [
        {"name": "n", "type": "long"}, {"name": "s", "type": "string"}]})
    writer = compile_writer(parsed)
    with pytest.raises(TypeError):
        writer({"n": "seven", "s": "x"})
    with pytest.raises(AttributeError):
        writer({"n": 1, "s": 7})
    with pytest.raises(KeyError):
        writer({"s": "x"})


def test_a_type_it_does_not_plan_is_left_to_fastavro() -> None:
    with pytest.raises(Unplanned):
        compile_writer(parse_schema({"type": "record", "name": "R", "fields": [
            {"name": "id", "type": {"type": "fixed", "name": "F", "size": 16}}]}))
    with pytest.raises(Unplanned):
        compile_writer(parse_schema({"type": "record", "name": "R", "fields": [
            {"name": "v", "type": ["null", "string", "long"]}]}))
