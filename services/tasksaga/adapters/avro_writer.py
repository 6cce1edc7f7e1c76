"""A writer compiled from one parsed Avro schema: the bytes ``fastavro.schemaless_writer``
writes for a record, faster.

fastavro's generic writer walks the schema for every value and writes through a file object;
it was ~18 of the ~50 µs an envelope's encode took. Planned once per schema, the walk becomes
straight-line Python appending to one ``bytearray`` (a function per named record, varints
inline). It writes what the codec hands fastavro: dicts for records (a field missing from
one takes its schema default, as fastavro's does), ``(name, body)`` for a record branch of a
union, a symbol string for an enum. A schema using a type it does not plan (fixed, logical
types, a union other than a nullable one or one of records) raises :class:`Unplanned` when
compiled, and the codec keeps fastavro for it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from tasksaga.adapters.avro_codegen import SourceCompiler
from tasksaga.adapters.avro_codegen import Unplanned as Unplanned

#: ``write(record)``: the Avro body of ``record``.
Writer = Callable[[Any], bytes]

_DOUBLE = struct.Struct("<d").pack
_FLOAT = struct.Struct("<f").pack


def _long_bytes(value: int) -> bytes:
    """The zig-zag varint of a long: for values past one byte (the common one is inline)."""
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{value} does not fit an Avro long")
    x = (value << 1) ^ (value >> 63)
    out = bytearray()
    while x > 127:
        out.append((x & 127) | 128)
        x >>= 7
    out.append(x)
    return bytes(out)


class _Compiler(SourceCompiler):
    """Writes the source of one writing function per record, then executes it once."""

    def __init__(self, named: dict[str, Any]) -> None:
        super().__init__(named, {"_long_bytes": _long_bytes, "_DOUBLE": _DOUBLE,
                                 "_FLOAT": _FLOAT})

    def record(self, schema: dict[str, Any]) -> str:
        """The name of the function writing ``schema`` (a record) to ``o``, written once."""
        found = self._functions.get(schema["name"])
        if found is not None:
            return found
        function = self._functions[schema["name"]] = self._name("_record")
        lines = [f"def {function}(r, o):"]
        for field in schema["fields"]:
            value = self._name("v")
            name = field["name"]
            if "default" in field:
                lines.append(f"    {value} = r.get({name!r}, {self._constant(field['default'])})")
            elif isinstance(field["type"], list) and "null" in field["type"]:
                lines.append(f"    {value} = r.get({name!r})")  # missing: null, as fastavro
            else:
                lines.append(f"    {value} = r[{name!r}]")
            self._value(field["type"], value, lines, "    ")
        if len(lines) == 1:
            lines.append("    pass")
        self._sources.append("\n".join(lines))
        return function

    def _long(self, value: str, lines: list[str], pad: str) -> None:
        lines += [f"{pad}if -64 <= {value} < 64:",
                  f"{pad}    o.append((({value} << 1) ^ ({value} >> 63)) & 255)",
                  f"{pad}else:", f"{pad}    o += _long_bytes({value})"]

    def _value(self, schema: Any, value: str, lines: list[str], pad: str) -> None:
        """Lines writing the local ``value`` as ``schema``."""
        schema, kind = self._kind_of(schema)
        if kind == "union":
            self._union(schema, value, lines, pad)
            return
        if kind == "null":
            lines += [f"{pad}if {value} is not None:",
                      f"{pad}    raise TypeError(f'{{{value}!r}} is not null')"]
        elif kind in ("int", "long"):
            self._long(value, lines, pad)
        elif kind in ("string", "bytes"):
            raw = self._name("b")
            size = self._name("n")
            lines.append(f"{pad}{raw} = {value}.encode()" if kind == "string"
                         else f"{pad}{raw} = bytes({value})")
            lines.append(f"{pad}{size} = len({raw})")
            self._long(size, lines, pad)
            lines.append(f"{pad}o += {raw}")
        elif kind == "boolean":
            lines.append(f"{pad}o.append(1 if {value} else 0)")
        elif kind in ("float", "double"):
            lines.append(f"{pad}o += {'_FLOAT' if kind == 'float' else '_DOUBLE'}({value})")
        elif kind == "enum":
            index = self._name("i")
            symbols = self._constant({s: i for i, s in enumerate(schema["symbols"])})
            lines.append(f"{pad}{index} = {symbols}[{value}]")
            self._long(index, lines, pad)
        elif kind in ("array", "map"):
            self._blocks(schema, kind, value, lines, pad)
        elif kind in ("record", "error"):
            lines.append(f"{pad}{self.record(schema)}({value}, o)")
        else:
            raise Unplanned(f"Avro type {kind}")

    def _blocks(self, schema: dict[str, Any], kind: str, value: str, lines: list[str],
                pad: str) -> None:
        """One block of all the items, then the empty block (as fastavro writes them)."""
        size, inner = self._name("n"), pad + "        "
        lines += [f"{pad}{size} = len({value})", f"{pad}if {size}:"]
        self._long(size, lines, pad + "    ")
        if kind == "map":
            key, item = self._name("k"), self._name("v")
            lines.append(f"{pad}    for {key}, {item} in {value}.items():")
            self._value("string", key, lines, inner)
            self._value(schema["values"], item, lines, inner)
        else:
            item = self._name("v")
            lines.append(f"{pad}    for {item} in {value}:")
            self._value(schema["items"], item, lines, inner)
        lines.append(f"{pad}o.append(0)")

    def _union(self, branches: list[Any], value: str, lines: list[str], pad: str) -> None:
        resolved = [self._resolve(b) for b in branches]
        others = [i for i, b in enumerate(resolved) if b != "null"]
        if len(resolved) == 2 and len(others) == 1:  # a nullable value
            lines += [f"{pad}if {value} is None:", f"{pad}    o.append({(1 - others[0]) * 2})",
                      f"{pad}else:", f"{pad}    o.append({others[0] * 2})"]
            self._value(resolved[others[0]], value, lines, pad + "    ")
            return
        if not all(isinstance(b, dict) and b.get("type") == "record" for b in resolved):
            raise Unplanned("a union other than a nullable value or records")
        writers = self._constant({})  # the payload union: a table by record name
        table: dict[str, str] = {}
        for index, branch in enumerate(resolved):
            function = self._name("_branch")
            self._sources.append("\n".join([
                f"def {function}(r, o):", f"    o.append({index * 2})",
                f"    {self.record(branch)}(r, o)"]))
            table[branch["name"]] = function
        self._sources.append("\n".join(
            f"{writers}[{name!r}] = {function}" for name, function in table.items()))
        lines.append(f"{pad}{writers}[{value}[0]]({value}[1], o)")

    def build(self, function: str) -> Writer:
        writer: Writer = self.execute("\n".join([
            "def _write(r):", "    o = bytearray()", f"    {function}(r, o)",
            "    return bytes(o)"]))["_write"]
        return writer


def compile_writer(parsed: Any) -> Writer:
    """The writer of records of ``parsed`` (a schema from ``parse_schema``)."""
    named = dict(parsed.get("__named_schemas", {}))
    compiler = _Compiler(named)
    return compiler.build(compiler.record(parsed))
