"""``replaced``: ``dataclasses.replace`` for the fold's frozen records, without its cost;
``assigned``: the in-place change of a private draft.

``dataclasses.replace`` walks the fields and calls ``__init__`` (which sets every field
through ``object.__setattr__``); ``evolve`` does that several times per event, and it was
90 % of the fold's time. The records it is used for (TaskState, StepState, SurplusEffect,
ReceivedSignal) have no ``__post_init__``, no ``init=False`` fields and no slots, so copying
the instance's ``__dict__`` gives the same value: equal fields, same type, still frozen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

R = TypeVar("R")

_FIELDS: dict[type[Any], frozenset[str]] = {}


def _fields_of(cls: type[Any]) -> frozenset[str]:
    names = _FIELDS.get(cls)
    if names is None:
        if hasattr(cls, "__post_init__") or hasattr(cls, "__slots__"):
            raise TypeError(f"{cls.__name__} needs dataclasses.replace (post-init or slots)")
        fields = dataclasses.fields(cls)
        if any(not f.init for f in fields):
            raise TypeError(f"{cls.__name__} has init=False fields: use dataclasses.replace")
        names = _FIELDS[cls] = frozenset(f.name for f in fields)
    return names


def _refuse_unknown(cls: type[Any], changes: dict[str, Any]) -> None:
    unknown = sorted(changes.keys() - _fields_of(cls))
    raise TypeError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")


def replaced(record: R, **changes: Any) -> R:
    """A copy of the frozen dataclass ``record`` with ``changes``; unknown field names raise
    TypeError, as ``dataclasses.replace`` does."""
    cls = type(record)
    if not changes.keys() <= (_FIELDS.get(cls) or _fields_of(cls)):
        _refuse_unknown(cls, changes)
    copy = object.__new__(cls)
    attributes = copy.__dict__
    attributes.update(record.__dict__)
    attributes.update(changes)
    return copy


def assigned(record: R, **changes: Any) -> R:
    """``record`` itself, its fields changed in place: only for a copy that its maker has not
    handed out yet (the fold's draft), so that everyone else still sees a frozen value."""
    cls = type(record)
    if not changes.keys() <= (_FIELDS.get(cls) or _fields_of(cls)):
        _refuse_unknown(cls, changes)
    record.__dict__.update(changes)
    return record


def constructor(cls: type[R]) -> Callable[[dict[str, Any]], R]:
    """A function making a ``cls`` (a frozen dataclass) from a dict of its fields' values: the
    dict becomes the instance's attributes when it has as many keys as ``cls`` has fields
    (the ``__init__`` of a frozen dataclass sets each one through ``object.__setattr__``, the
    slow part of decoding a message); anything else goes through ``cls(**values)``, and its
    errors. Only the count is compared, per call: the caller guarantees the names (the Avro
    codec checks each schema's records against their classes once, when it loads them)."""
    try:
        count = len(_fields_of(cls))
    except TypeError:
        return lambda values: cls(**values)

    def construct(values: dict[str, Any]) -> R:
        if len(values) != count:
            return cls(**values)
        made = object.__new__(cls)
        made.__dict__.update(values)
        return made

    return construct
