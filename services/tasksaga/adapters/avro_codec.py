"""Avro single-object encoding of envelopes, on fastavro.

Wire format (Avro spec, "single-object encoding"): ``C3 01`` + the 8-byte little-endian
CRC-64-AVRO fingerprint of the writer schema's parsing canonical form + the Avro body.
Every message names its own schema without a schema registry service; readers resolve the
writer schema found by fingerprint (current contracts/ or contracts/history/) to the current
reader schema, which is what makes backward-compatible evolution work.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from tasksaga.adapters.avro_codegen import Unplanned
from tasksaga.adapters.avro_reader import Reader, compile_reader
from tasksaga.adapters.avro_records import (
    SEALED_LISTS,
    SEALED_MAPS,
    SEALED_TEXT,
    Builder,
    SealedFields,
    check_fields,
    open_sealed,
    record_builder,
    sealed_fields,
)
from tasksaga.adapters.avro_schemas import NAMESPACE
from tasksaga.adapters.avro_writer import Writer, compile_writer
from tasksaga.adapters.payload_crypto import PayloadCipher, PayloadDecryptError, context
from tasksaga.adapters.wire import MESSAGE_SCHEMAS, Envelope
from tasksaga.core.records import constructor

MAGIC = b"\xc3\x01"
HEADER_LENGTH = len(MAGIC) + 8
DEFAULT_CONTRACTS_DIR = Path(__file__).resolve().parents[3] / "contracts"


class DecodeError(ValueError):
    """The bytes are not a message this service can read; the reason says why."""


@dataclass(frozen=True)
class _Schema:
    name: str
    raw: dict[str, Any]  # the schema's JSON, as in contracts/
    parsed: Any
    fingerprint: bytes


def _load(path: Path) -> _Schema:
    raw = json.loads(path.read_text())
    parsed = parse_schema(raw, _write_hint=False)
    canonical = to_parsing_canonical_form(parsed)
    return _Schema(
        name=raw["name"], raw=raw, parsed=parse_schema(raw),
        fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
    )


class AvroCodec:
    """Encodes and decodes envelopes; with an enabled ``cipher``, the task data fields of
    payloads travel sealed (the services always pass one: ``payload_cipher_for(settings)``)."""

    def __init__(
        self, contracts_dir: Path = DEFAULT_CONTRACTS_DIR, cipher: PayloadCipher | None = None,
    ) -> None:
        self.cipher = cipher if cipher is not None else PayloadCipher(None)
        if not (contracts_dir / "task_event.avsc").exists():
            raise FileNotFoundError(
                f"no Avro contracts in {contracts_dir}; set TASKSAGA_CONTRACTS_DIR to the "
                "repository's contracts/ folder"
            )
        self._current: dict[str, _Schema] = {}
        self._writers: dict[bytes, _Schema] = {}
        for path in sorted(contracts_dir.glob("*.avsc")):
            schema = _load(path)
            self._current[schema.name] = schema
            self._writers[schema.fingerprint] = schema
        for path in sorted((contracts_dir / "history").glob("*.avsc")):
            schema = _load(path)
            self._writers.setdefault(schema.fingerprint, schema)
        self._payload_types: dict[str, type[Any]] = {}
        self._schema_of_payload: dict[type[Any], str] = {}
        for message_name, payload_types in MESSAGE_SCHEMAS:
            for payload_type in payload_types:
                self._payload_types[f"{NAMESPACE}.{payload_type.__name__}"] = payload_type
                self._schema_of_payload[payload_type] = message_name
        # Planned once: per writer, the reader schema to resolve to (None: it is the current
        # one, read as written, by cavro's reader); per payload record, how it becomes its
        # dataclass.
        self._readers: dict[bytes, tuple[_Schema, Any, Reader | None]] = {
            fp: (writer, None, compile_reader(writer.raw))
            if writer is self._current[writer.name]
            else (writer, self._current[writer.name].parsed, None)
            for fp, writer in self._writers.items() if writer.name in self._current}
        self._encoders: dict[str, tuple[_Schema, Writer | None]] = {
            name: (schema, _compiled_writer(schema)) for name, schema in self._current.items()}
        for schema in self._current.values():
            _check_classes(schema, self._payload_types)
        self._decoders: dict[str, tuple[str, SealedFields | None, Builder]] = {
            name: (cls.__name__, sealed if (sealed := sealed_fields(cls)).any else None,
                   record_builder(cls))
            for name, cls in self._payload_types.items()}

    def schema_name_of(self, envelope: Envelope) -> str:
        return self._schema_of_payload[type(envelope.payload)]

    def encode(self, envelope: Envelope) -> bytes:
        schema, write = self._encoders[self.schema_name_of(envelope)]
        record = {name: getattr(envelope, name) for name in _field_names(Envelope)}
        payload = envelope.payload
        body = _to_record(payload)
        if self.cipher.enabled:
            _transform(type(payload).__name__, body, envelope.task_id, self.cipher.seal)
        record["payload"] = (f"{NAMESPACE}.{type(payload).__name__}", body)
        if write is not None:
            return MAGIC + schema.fingerprint + write(record)
        buffer = io.BytesIO()
        buffer.write(MAGIC)
        buffer.write(schema.fingerprint)
        schemaless_writer(buffer, schema.parsed, record)
        return buffer.getvalue()

    def decode(self, data: bytes | None) -> Envelope:
        if data is None or len(data) < HEADER_LENGTH or data[:2] != MAGIC:
            raise DecodeError("not Avro single-object encoded (missing C3 01 header)")
        found = self._readers.get(data[2:HEADER_LENGTH])
        if found is None:
            self._refuse_writer(data[2:HEADER_LENGTH])
        writer, reader, compiled = found
        try:
            # Written with the current schema (nearly every message): read it as written,
            # no resolution, by cavro. An older writer is resolved to the current reader
            # schema by fastavro.
            if compiled is not None:
                record = compiled(bytes(data[HEADER_LENGTH:]))
            else:
                body_stream = io.BytesIO(data)
                body_stream.seek(HEADER_LENGTH)
                record = schemaless_reader(body_stream, writer.parsed, reader,
                                           return_record_name=True)
        except Exception as error:  # corrupt bodies raise many types (cavro's, fastavro's)
            raise DecodeError(f"corrupt Avro body for {writer.name}: {error}") from error
        assert isinstance(record, dict)
        name, body = record.pop("payload")
        decoder = self._decoders.get(name)
        if decoder is None:
            raise DecodeError(f"payload type {name} has no Python class here")
        type_name, sealed, build = decoder
        if sealed is not None:
            try:
                open_sealed(type_name, sealed, body, record["task_id"], self.cipher)
            except PayloadDecryptError as error:
                raise DecodeError(f"{name} of task {record['task_id']}: {error}") from error
        record["payload"] = build(body)
        return _make_envelope(record)

    def _refuse_writer(self, fingerprint: bytes) -> NoReturn:
        writer = self._writers.get(fingerprint)
        if writer is None:
            raise DecodeError(
                f"unknown schema fingerprint {fingerprint.hex()}: the writer used a "
                "schema that is not in contracts/ (add it to contracts/history/)"
            )
        raise DecodeError(f"schema {writer.name} is no longer read by this service")


_make_envelope = constructor(Envelope)


def _check_classes(schema: _Schema, payload_types: dict[str, type[Any]]) -> None:
    """The records of a current schema name exactly the fields of their classes (the
    envelope's, each payload's): what the builders trust. A schema edited by hand, or not
    regenerated after a class changed, fails here, when the codec loads, not per message."""
    named: dict[str, Any] = schema.parsed.get("__named_schemas", {})
    check_fields(Envelope, schema.parsed, named)
    payload = next(f["type"] for f in schema.parsed["fields"] if f["name"] == "payload")
    for branch in payload:
        record = named[branch] if isinstance(branch, str) else branch
        check_fields(payload_types[record["name"]], record, named)


def _compiled_writer(schema: _Schema) -> Writer | None:
    """The compiled writer of ``schema`` (None: it uses a type only fastavro writes)."""
    try:
        return compile_writer(schema.parsed)
    except Unplanned:
        return None


def _transform(
    type_name: str, body: dict[str, Any], task_id: str, apply: Callable[[str, bytes], str],
) -> None:
    """Seal or open (``apply``) the task data fields of one payload record, in place.

    The context is (task id, record type, field[, step]): the step is the record's own
    ``step`` field, or the key of a ``step_data`` entry; records nested in a list (the
    ApiStepResults of a SubmitTask) are typed ``Parent.field``.
    """
    for field, value in body.items():
        if value is None:
            continue
        if field in SEALED_TEXT:
            step = (str(body["step"]),) if "step" in body else ()
            body[field] = apply(value, context(task_id, type_name, field, *step))
        elif field in SEALED_MAPS:
            body[field] = {step: apply(data, context(task_id, type_name, field, step))
                           for step, data in value.items()}
        elif field in SEALED_LISTS:
            owner = str(body.get("step", ""))
            body[field] = [apply(item, context(task_id, type_name, field, owner, str(index)))
                           for index, item in enumerate(value)]
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    _transform(f"{type_name}.{field}", item, task_id, apply)


_PLAIN = frozenset({str, int, bool, float, bytes, type(None)})
_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    """A dataclass's field names, looked up once (``dataclasses.fields`` is slow per call)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _to_record(value: Any) -> Any:
    cls = type(value)
    if cls in _PLAIN:
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: _to_record(getattr(value, name)) for name in _field_names(cls)}
    if isinstance(value, list):
        return [_to_record(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_record(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    return value


