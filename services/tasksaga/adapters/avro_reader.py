"""The reader of bodies written with the current schema: cavro's (a Cython Avro codec).

It returns what ``fastavro.schemaless_reader`` returns for a body written with that schema
(no resolution, ``return_record_name=True``: a record in a union as ``(full name, dict)``),
about twice as fast: replay and every service's inbound messages spend most of their decode
time here. fastavro still resolves bodies of older writer schemas (the codec), where cavro's
speed does not matter.

Where the two differ, cavro is the stricter: a negative union index (which fastavro reads as a
Python index from the end) is refused, and so are arrays and maps written in blocks of a
negative count with a byte size, which the spec allows but no writer of ours (fastavro, the
compiled writer) produces. Both raise, and the codec turns that into a ``DecodeError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cavro

#: ``read(body)``: the record (a dict) of one Avro body.
Reader = Callable[[bytes], Any]

_OPTIONS = cavro.DEFAULT_OPTIONS.replace(
    union_decodes_to=cavro.UnionDecodeOption.TYPE_TUPLE_IF_RECORD,
    record_decodes_to_dict=True,
)


def compile_reader(schema: dict[str, Any]) -> Reader:
    """The reader of records written with ``schema`` (its JSON, as in contracts/)."""
    read: Reader = cavro.Schema(schema, options=_OPTIONS).binary_decode
    return read
