"""A reader compiled from one parsed Avro schema: what ``fastavro.schemaless_reader`` returns
for a body written with that schema (no resolution; ``return_record_name=True``), faster.

fastavro's generic reader walks the schema for every value (a string compare per type, a
``read(1)`` call on a file object per varint byte): ~6 µs of a replay's ~9 µs per event.
Planned once per writer schema, the same walk becomes straight-line Python over the bytes
(one function per named record, varints inline): about half the time.
A schema using a type this reader does not plan (fixed, logical types) raises
:class:`Unplanned` when compiled; the codec then keeps fastavro for it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from tasksaga.adapters.avro_codegen import SourceCompiler
from tasksaga.adapters.avro_codegen import Unplanned as Unplanned

#: ``read(body, start)``: the record and the position after it.
Reader = Callable[[bytes, int], tuple[Any, int]]

_FLOAT = struct.Struct("<f").unpack_from
_DOUBLE = struct.Struct("<d").unpack_from


def _bytes_end(size: int, pos: int, length: int) -> int:
    end = pos + size
    if size < 0 or end > length:
        raise EOFError(f"Expected {size} bytes, read {max(length - pos, 0)}")
    return end


def _truncated(pos: int) -> EOFError:
    return EOFError(f"the body ends before position {pos}")


class _Compiler(SourceCompiler):
    """Writes the source of one reading function per record, then executes it once."""

    def __init__(self, named: dict[str, Any]) -> None:
        super().__init__(named, {"_bytes_end": _bytes_end, "_FLOAT": _FLOAT,
                                 "_DOUBLE": _DOUBLE, "_truncated": _truncated})

    def record(self, schema: dict[str, Any]) -> str:
        """The name of the function reading ``schema`` (a record), written when first seen."""
        found = self._functions.get(schema["name"])
        if found is not None:
            return found
        function = self._functions[schema["name"]] = self._name("_record")
        lines = [f"def {function}(d, p):", "    n = len(d)"]
        values = []
        for field in schema["fields"]:
            target = self._name("v")
            self._value(field["type"], target, lines, "    ")
            values.append(f"{field['name']!r}: {target}")
        lines.append(f"    return {{{', '.join(values)}}}, p")
        self._sources.append("\n".join(lines))
        return function

    def _long(self, target: str, lines: list[str], pad: str) -> None:
        # Past the end, ``d[p]`` raises IndexError: no bounds test of its own.
        # Longer ones (times in ms take six bytes) in a loop here: a call costs as much as
        # two turns of it.
        lines += [f"{pad}b = d[p]", f"{pad}p += 1",
                  f"{pad}if b < 128:", f"{pad}    {target} = (b >> 1) ^ -(b & 1)",
                  f"{pad}else:", f"{pad}    x = b & 127", f"{pad}    t = 7",
                  f"{pad}    while True:", f"{pad}        b = d[p]", f"{pad}        p += 1",
                  f"{pad}        x |= (b & 127) << t", f"{pad}        if b < 128:",
                  f"{pad}            break", f"{pad}        t += 7",
                  f"{pad}    {target} = (x >> 1) ^ -(x & 1)"]

    def _value(self, schema: Any, target: str, lines: list[str], pad: str) -> None:
        """Lines reading one value of ``schema`` into the local ``target``."""
        schema, kind = self._kind_of(schema)
        if kind == "union":
            self._union(schema, target, lines, pad)
            return
        if kind == "null":
            lines.append(f"{pad}{target} = None")
        elif kind in ("int", "long"):
            self._long(target, lines, pad)
        elif kind in ("string", "bytes"):
            self._long("s", lines, pad)
            lines += [f"{pad}e = p + s", f"{pad}if s < 0 or e > n:",
                      f"{pad}    raise _truncated(e)"]
            lines.append(f"{pad}{target} = d[p:e]{'.decode()' if kind == 'string' else ''}")
            lines.append(f"{pad}p = e")
        elif kind == "boolean":
            lines += [f"{pad}{target} = d[p] != 0", f"{pad}p += 1"]
        elif kind in ("float", "double"):
            size, unpack = (4, "_FLOAT") if kind == "float" else (8, "_DOUBLE")
            lines += [f"{pad}e = _bytes_end({size}, p, n)",
                      f"{pad}{target}, = {unpack}(d, p)", f"{pad}p = e"]
        elif kind == "enum":
            self._long("i", lines, pad)
            lines.append(f"{pad}{target} = {self._constant(tuple(schema['symbols']))}[i]")
        elif kind in ("array", "map"):
            self._blocks(schema, kind, target, lines, pad)
        elif kind in ("record", "error"):
            lines.append(f"{pad}{target}, p = {self.record(schema)}(d, p)")
        else:
            raise Unplanned(f"Avro type {kind}")

    def _blocks(self, schema: dict[str, Any], kind: str, target: str, lines: list[str],
                pad: str) -> None:
        count, item = self._name("k"), self._name("v")
        inner = pad + "        "
        lines.append(f"{pad}{target} = {'[]' if kind == 'array' else '{}'}")
        self._long(count, lines, pad)
        lines.append(f"{pad}while {count} != 0:")
        lines += [f"{pad}    if {count} < 0:", f"{pad}        {count} = -{count}"]
        self._long("_size", lines, pad + "        ")  # the block's size in bytes: unused
        lines.append(f"{pad}    for _ in range({count}):")
        if kind == "map":
            key = self._name("v")
            self._value("string", key, lines, inner)
            self._value(schema["values"], item, lines, inner)
            lines.append(f"{inner}{target}[{key}] = {item}")
        else:
            self._value(schema["items"], item, lines, inner)
            lines.append(f"{inner}{target}.append({item})")
        self._long(count, lines, pad + "    ")

    def _union(self, branches: list[Any], target: str, lines: list[str], pad: str) -> None:
        resolved = [self._resolve(b) for b in branches]
        self._long("i", lines, pad)
        if len(branches) > 3:  # the payload union: a table of readers, not a chain of ifs
            readers = []
            for branch in resolved:
                function = self._name("_branch")
                body = [f"def {function}(d, p):", "    n = len(d)"]
                self._branch(branch, "r", body, "    ")
                body.append("    return r, p")
                self._sources.append("\n".join(body))
                readers.append(function)
            table = self._name("_union")
            self._sources.append(f"{table} = ({', '.join(readers)},)")
            lines += [f"{pad}if i < 0:", f"{pad}    raise IndexError(i)",
                      f"{pad}{target}, p = {table}[i](d, p)"]
            return
        for index, branch in enumerate(resolved):
            lines.append(f"{pad}{'if' if index == 0 else 'elif'} i == {index}:")
            self._branch(branch, target, lines, pad + "    ")
        lines += [f"{pad}else:", f"{pad}    raise IndexError(i)"]

    def _branch(self, branch: Any, target: str, lines: list[str], pad: str) -> None:
        self._value(branch, target, lines, pad)
        if isinstance(branch, dict) and branch.get("type") in ("record", "error"):
            lines.append(f"{pad}{target} = ({branch['name']!r}, {target})")

    def build(self, function: str) -> Reader:
        reader: Reader = self.execute()[function]
        return reader


def compile_reader(parsed: Any) -> Reader:
    """The reader of records written with ``parsed`` (a schema from ``parse_schema``)."""
    named = dict(parsed.get("__named_schemas", {}))
    compiler = _Compiler(named)
    return compiler.build(compiler.record(parsed))
