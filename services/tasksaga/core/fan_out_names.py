"""How the instances of a for_each step are named: ``TranscodeEach[17]`` (pure)."""

from __future__ import annotations


def instance_name(step: str, index: int) -> str:
    return f"{step}[{index}]"


def parse_instance(name: str) -> tuple[str, int] | None:
    """(step, index) of an instance name such as ``TranscodeEach[17]``; None otherwise."""
    if not name.endswith("]"):
        return None
    step, bracket, index = name[:-1].rpartition("[")
    if not bracket or not step or not index.isdigit() or (index != "0" and index[0] == "0"):
        return None
    return step, int(index)


def step_label(name: str) -> str:
    """The step a metric counts ``name`` under: an instance counts under its for_each step,
    so labels stay bounded by the definition (``Each``, not ``Each[0]`` to ``Each[999]``)."""
    parsed = parse_instance(name)
    return parsed[0] if parsed is not None else name
