"""The reader of current-schema bodies (cavro's) returns what fastavro's ``schemaless_reader``
returns for the same body (no resolution, ``return_record_name=True``): for every payload type
under every schema and for random values of every contract schema; it refuses what fastavro
refuses (a cut body), and what fastavro wrongly reads (a negative union index)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from tasksaga.adapters.avro_codec import (
    DEFAULT_CONTRACTS_DIR,
    HEADER_LENGTH,
    AvroCodec,
    DecodeError,
)
from tasksaga.adapters.avro_reader import compile_reader
from tasksaga.adapters.wire import Envelope
from tests.unit.test_avro_codec import sample
from tests.unit.test_avro_fast_decode import CASES, encode_with

SCHEMAS = sorted([*DEFAULT_CONTRACTS_DIR.glob("*.avsc"),
                  *(DEFAULT_CONTRACTS_DIR / "history").glob("*.avsc")])


def fastavro_read(parsed: Any, body: bytes) -> Any:
    return schemaless_reader(io.BytesIO(body), parsed, None, return_record_name=True)


@pytest.mark.parametrize(("path", "message", "payload_type"), CASES,
                         ids=lambda v: v.name if isinstance(v, Path) else
                         getattr(v, "__name__", str(v)))
def test_the_reader_reads_what_fastavro_reads(
        path: Path, message: str, payload_type: type[Any]) -> None:
    writer = json.loads(path.read_text())
    parsed: Any = parse_schema(writer)
    envelope = Envelope(payload=sample(payload_type), message_id="m", task_id="t",
                        correlation_id="c", causation_id=None, occurred_at_ms=-1,
                        task_type="T", version=2**40)
    body = encode_with(writer, envelope)[HEADER_LENGTH:]
    assert compile_reader(writer)(body) == fastavro_read(parsed, body)


# -- random values of each schema ------------------------------------------------------------

def values_of(schema: Any, named: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values fastavro can write for ``schema``, paired with the union branch they take."""
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        return st.one_of([branch_of(b, named) for b in schema])
    kind = schema["type"] if isinstance(schema, dict) else schema
    if kind == "null":
        return st.none()
    if kind in ("int", "long"):
        return st.integers(-(2**63), 2**63 - 1) | st.integers(-200, 200)
    if kind == "string":
        return st.text(max_size=40)
    if kind == "bytes":
        return st.binary(max_size=40)
    if kind == "boolean":
        return st.booleans()
    if kind in ("float", "double"):
        return st.floats(allow_nan=False, width=32 if kind == "float" else 64)
    if kind == "array":
        return st.lists(values_of(schema["items"], named), max_size=4)
    if kind == "map":
        return st.dictionaries(st.text(max_size=8), values_of(schema["values"], named),
                               max_size=3)
    assert kind == "record", kind
    named[schema["name"]] = schema
    return st.fixed_dictionaries({f["name"]: values_of(f["type"], named)
                                  for f in schema["fields"]})


def branch_of(branch: Any, named: dict[str, Any]) -> st.SearchStrategy[Any]:
    resolved = named.get(branch, branch) if isinstance(branch, str) else branch
    values = values_of(resolved, named)
    if isinstance(resolved, dict) and resolved["type"] == "record":
        return values.map(lambda v: (resolved["name"], v))  # the branch named, as read back
    return values


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.name)
def test_random_values_of_every_schema_read_back_as_fastavro_reads_them(path: Path) -> None:
    raw = json.loads(path.read_text())
    parsed: Any = parse_schema(raw)
    reader = compile_reader(raw)

    @settings(max_examples=60, deadline=None)
    @given(values_of(parsed, dict(parsed["__named_schemas"])))
    def check(record: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        schemaless_writer(buffer, parsed, record)
        body = buffer.getvalue()
        assert reader(body) == fastavro_read(parsed, body)

    check()


# -- damaged bodies -------------------------------------------------------------------------

CURRENT_CASES = [case for case in CASES if case[0].parent == DEFAULT_CONTRACTS_DIR]


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_a_damaged_body_is_refused_or_read_as_fastavro_reads_it(data: st.DataObject) -> None:
    """Bytes changed and cut anywhere: the reader never returns a value fastavro would not
    (it may refuse more: see test_a_negative_union_index_is_refused), and never crashes."""
    path, _message, payload_type = data.draw(st.sampled_from(CURRENT_CASES))
    writer = json.loads(path.read_text())
    envelope = Envelope(payload=sample(payload_type), message_id="m", task_id="t",
                        correlation_id="c", causation_id=None, occurred_at_ms=7)
    body = bytearray(encode_with(writer, envelope)[HEADER_LENGTH:])
    for at, value in data.draw(st.lists(st.tuples(st.integers(0, len(body) - 1),
                                                  st.integers(0, 255)), min_size=1,
                                        max_size=4)):
        body[at] = value
    damaged = bytes(body[:data.draw(st.integers(0, len(body)))])
    try:
        ours = compile_reader(writer)(damaged)
    except Exception:  # cavro raises ValueError, EOFError, UnicodeDecodeError...
        return
    assert ours == fastavro_read(parse_schema(writer), damaged)


# -- what is not a whole body ---------------------------------------------------------------

def test_every_cut_of_a_message_is_refused() -> None:
    codec = AvroCodec()
    data = codec.encode(Envelope(payload=sample(CASES[0][2]), message_id="m", task_id="t",
                                 correlation_id="c", causation_id="k", occurred_at_ms=1))
    for cut in range(HEADER_LENGTH, len(data)):
        with pytest.raises(DecodeError):
            codec.decode(data[:cut])


def test_a_negative_union_index_is_refused() -> None:
    """fastavro reads index -1 as the union's last branch (a Python index); it is corrupt."""
    schema = {"type": "record", "name": "R", "fields": [
        {"name": "v", "type": ["null", "string"]}]}
    body = bytes([1, 0])  # branch -1 (zigzag), then an empty string
    assert fastavro_read(parse_schema(schema), body) == {"v": ""}
    with pytest.raises(ValueError, match="union"):
        compile_reader(schema)(body)


def test_a_corrupt_union_index_in_a_message_is_a_decode_error() -> None:
    codec = AvroCodec()
    data = codec.encode(Envelope(payload=sample(CASES[0][2]), message_id="m", task_id="t",
                                 correlation_id="c", causation_id="k", occurred_at_ms=1))
    corrupt = data[:HEADER_LENGTH] + bytes([1]) + data[HEADER_LENGTH + 1:]
    with pytest.raises(DecodeError, match="corrupt Avro body"):
        codec.decode(corrupt)


def test_blocks_with_a_byte_size_are_refused_not_misread() -> None:
    """The spec lets a writer send an array in blocks of a negative count and a byte size; no
    writer of ours does (fastavro, the compiled writer), and cavro refuses them: an error,
    never a wrong value."""
    schema = {"type": "record", "name": "R", "fields": [
        {"name": "items", "type": {"type": "array", "items": "long"}}]}
    body = bytes([3, 4, 2, 4, 2, 6, 0])  # a block of -2 items (2 bytes): 1, 2; one of 1: 3
    assert fastavro_read(parse_schema(schema), body) == {"items": [1, 2, 3]}
    with pytest.raises(EOFError):
        compile_reader(schema)(body)
