"""What a user function's annotations say about the data it returns (pure)."""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel


def returned_model(function: Callable[..., Any]) -> type[BaseModel] | None:
    """The pydantic model ``function`` is annotated to return, if any."""
    returned = _return_hint(function)
    if isinstance(returned, type) and issubclass(returned, BaseModel):
        return returned
    return None


def returned_list_model(function: Callable[..., Any]) -> type[BaseModel] | None:
    """``Model`` when ``function`` is annotated ``-> list[Model]`` (or a Sequence of it)."""
    returned = _return_hint(function)
    arguments = typing.get_args(returned)
    if len(arguments) == 1 and isinstance(arguments[0], type) and issubclass(
            arguments[0], BaseModel):
        return arguments[0]
    return None


def _return_hint(function: Callable[..., Any]) -> Any:
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # unresolved forward references: the user can say it explicitly
        return None
    return hints.get("return")
