"""From decoded Avro records to the core's dataclasses, and opening their sealed fields.

Both are planned once per payload class (from its type hints) and then applied per message:
the generic walk that asked ``typing`` about every field of every message was most of the
decode time of a replay.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasksaga.adapters.payload_crypto import PayloadCipher, context, is_sealed
from tasksaga.core.records import constructor

# Payload fields holding task data, by the names every message uses for it: sealed inside each
# encoded message, so the events table, the outbox and every topic carry ciphertext. A new
# message type with such a field is covered without a change here.
SEALED_TEXT = frozenset({"request_json", "data_json", "response_json", "item_json"})
SEALED_MAPS = frozenset({"step_data"})  # step name -> that step's data_json
SEALED_LISTS = frozenset({"items_json"})  # a for_each step's items, each sealed on its own

Builder = Callable[[dict[str, Any]], Any]
_BUILDERS: dict[type[Any], Builder] = {}


def record_builder(cls: type[Any]) -> Builder:
    """The function that makes a ``cls`` from its Avro record (a dict, consumed): enums from
    their values, nested records (alone or in lists) by their own builders."""
    built = _BUILDERS.get(cls)
    if built is not None:
        return built
    hints = typing.get_type_hints(cls)
    converters = [(f.name, c) for f in dataclasses.fields(cls)
                  if (c := _value_converter(hints[f.name])) is not None]
    construct = constructor(cls)

    def build(body: dict[str, Any]) -> Any:
        for name, convert in converters:
            value = body.get(name)
            if value is not None:
                body[name] = convert(value)
        return construct(body)

    _BUILDERS[cls] = build
    return build


def _value_converter(annotation: Any) -> Callable[[Any], Any] | None:
    """How a non-null Avro value becomes the field's Python value (None: as it is)."""
    args = typing.get_args(annotation)
    if type(None) in args:
        (annotation,) = [a for a in args if a is not type(None)]
        args = typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return annotation
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return record_builder(annotation)
    if typing.get_origin(annotation) is list and isinstance(args[0], type) \
            and dataclasses.is_dataclass(args[0]):
        item = record_builder(args[0])
        return lambda values: [item(v) for v in values]
    return None


def check_fields(cls: type[Any], record: dict[str, Any], named: dict[str, Any]) -> None:
    """Raise when the Avro ``record`` schema, or a record nested in it (a field of a record
    type, alone or in a list), names other fields than its dataclass: the codec's builders
    trust the names (records.constructor). ``named``: the schema's named types."""
    fields = {f["name"]: f["type"] for f in record["fields"]}
    names = {f.name for f in dataclasses.fields(cls)}
    if fields.keys() != names:
        raise ValueError(
            f"schema {record['name']} has fields {sorted(fields)} but {cls.__name__} has "
            f"{sorted(names)}: regenerate contracts/ with tools/generate_contracts.py")
    hints = typing.get_type_hints(cls)
    for name, annotation in hints.items():
        if name not in fields:
            continue  # a ClassVar
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        inner = args[0] if typing.get_origin(annotation) is list or len(args) == 1 else None
        nested = inner if inner is not None else annotation
        if isinstance(nested, type) and dataclasses.is_dataclass(nested):
            check_fields(nested, _record_in(fields[name], named), named)


def _record_in(schema: Any, named: dict[str, Any]) -> dict[str, Any]:
    """The record type inside a field's type (a union with null, an array, a name)."""
    if isinstance(schema, str):
        return _record_in(named[schema], named)
    if isinstance(schema, list):
        return _record_in(next(b for b in schema if b != "null"), named)
    if schema["type"] == "array":
        return _record_in(schema["items"], named)
    record: dict[str, Any] = schema
    return record


@dataclass(frozen=True)
class SealedFields:
    """The fields of one payload class that may hold sealed task data."""

    text: tuple[str, ...]
    maps: tuple[str, ...]
    lists: tuple[str, ...]
    nested: tuple[tuple[str, SealedFields], ...]  # lists of records, each with its own

    @property
    def any(self) -> bool:
        return bool(self.text or self.maps or self.lists or self.nested)


_SEALED: dict[type[Any], SealedFields] = {}


def sealed_fields(cls: type[Any]) -> SealedFields:
    found = _SEALED.get(cls)
    if found is not None:
        return found
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    nested = []
    for name in names:
        args = typing.get_args(hints[name])
        if typing.get_origin(hints[name]) is list and isinstance(args[0], type) \
                and dataclasses.is_dataclass(args[0]):
            inner = sealed_fields(args[0])
            if inner.any:
                nested.append((name, inner))
    found = _SEALED[cls] = SealedFields(
        tuple(n for n in names if n in SEALED_TEXT), tuple(n for n in names if n in SEALED_MAPS),
        tuple(n for n in names if n in SEALED_LISTS), tuple(nested))
    return found


def open_sealed(type_name: str, fields: SealedFields, body: dict[str, Any], task_id: str,
                cipher: PayloadCipher) -> None:
    """Open the sealed task data fields of one decoded record, in place. Same contexts as the
    codec's sealing (task id, record type, field[, step]); values that are not sealed (written
    before encryption was enabled) are left as they are, without computing a context."""
    for field in fields.text:
        value = body.get(field)
        if value is not None and is_sealed(value):
            step = (str(body["step"]),) if "step" in body else ()
            body[field] = cipher.open(value, context(task_id, type_name, field, *step))
    for field in fields.maps:
        entries = body.get(field)
        if entries:
            body[field] = {step: cipher.open(data, context(task_id, type_name, field, step))
                           if is_sealed(data) else data for step, data in entries.items()}
    for field in fields.lists:
        items = body.get(field)
        if items:
            owner = str(body.get("step", ""))
            body[field] = [
                cipher.open(item, context(task_id, type_name, field, owner, str(index)))
                if is_sealed(item) else item for index, item in enumerate(items)]
    for field, inner in fields.nested:
        for item in body.get(field) or ():
            if isinstance(item, dict):
                open_sealed(f"{type_name}.{field}", inner, item, task_id, cipher)
