"""Derives the Avro schemas in contracts/ from the message dataclasses.

contracts/*.avsc are the wire truth; this module regenerates them (tools/generate_contracts)
and a unit test fails when the files and the dataclasses disagree.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from typing import Any

from tasksaga.adapters.wire import MESSAGE_SCHEMAS, Envelope

NAMESPACE = "tasksaga.v1"

_PRIMITIVES: dict[Any, str] = {str: "string", int: "long", bool: "boolean", float: "double",
                               bytes: "bytes"}


def _avro_type(annotation: Any, defined: set[str]) -> tuple[Any, bool]:
    """(avro type, optional) for one field annotation."""
    args = typing.get_args(annotation)
    if type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        avro, _ = _avro_type(inner, defined)
        return ["null", avro], True
    if annotation in _PRIMITIVES:
        return _PRIMITIVES[annotation], False
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "string", False
    origin = typing.get_origin(annotation)
    if origin is list:
        return {"type": "array", "items": _avro_type(args[0], defined)[0]}, False
    if origin is dict:
        return {"type": "map", "values": _avro_type(args[1], defined)[0]}, False
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return record_schema(annotation, defined), False
    raise TypeError(f"no Avro mapping for {annotation!r}")


def record_schema(cls: type[Any], defined: set[str]) -> Any:
    name = f"{NAMESPACE}.{cls.__name__}"
    if name in defined:
        return name  # a named type is defined once, then referred to by name
    defined.add(name)
    hints = typing.get_type_hints(cls)
    fields = [_field_schema(field, hints[field.name], defined) for field in dataclasses.fields(cls)]
    doc = (cls.__doc__ or "").strip().splitlines()
    record: dict[str, Any] = {"type": "record", "name": cls.__name__, "namespace": NAMESPACE}
    if doc and not doc[0].startswith(cls.__name__ + "("):
        record["doc"] = doc[0]
    record["fields"] = fields
    return record


def message_schema(name: str, payload_types: tuple[type[Any], ...]) -> dict[str, Any]:
    defined: set[str] = set()
    fields: list[dict[str, Any]] = [
        {"name": "payload", "type": [record_schema(t, defined) for t in payload_types]}
    ]
    hints = typing.get_type_hints(Envelope)
    fields += [_field_schema(field, hints[field.name], defined)
               for field in dataclasses.fields(Envelope) if field.name != "payload"]
    return {"type": "record", "name": name, "namespace": NAMESPACE, "fields": fields}


def _field_schema(field: dataclasses.Field[Any], hint: Any, defined: set[str]) -> dict[str, Any]:
    """One record field; an optional field defaults to null, others to their declared default."""
    avro, optional = _avro_type(hint, defined)
    entry: dict[str, Any] = {"name": field.name, "type": avro}
    if optional:
        entry["default"] = None
    elif field.default is not dataclasses.MISSING and field.default is not None:
        entry["default"] = field.default
    elif field.default_factory is not dataclasses.MISSING:
        entry["default"] = field.default_factory()
    return entry


def build_schemas() -> dict[str, dict[str, Any]]:
    """File stem -> schema, one per Kafka record type."""
    return {_stem(name): message_schema(name, types) for name, types in MESSAGE_SCHEMAS}


def _stem(name: str) -> str:
    base = name.removesuffix("Message")
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in base).lstrip("_")
