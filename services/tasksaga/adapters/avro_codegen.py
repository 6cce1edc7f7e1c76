"""The compiled Avro writer's machinery: Python source written once per schema (the reader
it also served is now cavro's, adapters/avro_reader.py).

A compiler walks a parsed schema once, writing one function per named record (and the
constants they use: symbol tables, struct packers), then executes the source once.
"""

from __future__ import annotations

from typing import Any


class Unplanned(ValueError):
    """The schema uses a type the compiled code does not handle (fastavro then does)."""


class SourceCompiler:
    """Collects generated functions and their constants; ``execute`` runs them once."""

    def __init__(self, named: dict[str, Any], constants: dict[str, Any]) -> None:
        self._named = named  # the schema's named types, for references by name
        self._functions: dict[str, str] = {}  # record name -> function name
        self._sources: list[str] = []
        self.constants = dict(constants)
        self._serial = 0

    def _name(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}{self._serial}"

    def _constant(self, value: Any) -> str:
        name = self._name("_c")
        self.constants[name] = value
        return name

    def _resolve(self, schema: Any) -> Any:
        """A type given by name, as its definition."""
        return self._named.get(schema, schema) if isinstance(schema, str) else schema

    def _kind_of(self, schema: Any) -> tuple[Any, str]:
        """The definition of ``schema`` and its kind ("union" for a list of branches)."""
        schema = self._resolve(schema)
        if isinstance(schema, list):
            return schema, "union"
        if isinstance(schema, dict) and "logicalType" in schema:
            raise Unplanned(f"logical type {schema['logicalType']}")
        return schema, schema["type"] if isinstance(schema, dict) else schema

    def execute(self, *extra: str) -> dict[str, Any]:
        """The namespace of the generated functions (and of ``extra`` source after them)."""
        namespace = dict(self.constants)
        exec("\n\n".join([*self._sources, *extra]), namespace)  # the source is generated here
        return namespace
