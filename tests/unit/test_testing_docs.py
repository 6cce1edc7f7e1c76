"""docs/testing.md's examples are tests: every Python block of the page, run as one module, and
each of its test functions called."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def _page_module() -> dict[str, Any]:
    """The page with everything but its Python blocks blanked: a failure names its line."""
    lines, inside = [], False
    for line in PAGE.read_text().splitlines():
        fence = line.strip().startswith("```")
        lines.append(line if inside and not fence else "")
        if fence:
            inside = line.strip() == "```python"
    namespace: dict[str, Any] = {"__name__": "testing_md"}
    exec(compile("\n".join(lines), str(PAGE), "exec"), namespace)
    return namespace


def _page_tests() -> list[str]:
    return sorted(name for name in _page_module() if name.startswith("test_"))


def test_the_page_has_its_worked_examples() -> None:
    assert len(_page_tests()) >= 5


@pytest.mark.parametrize("name", _page_tests())
def test_an_example_of_the_page_passes(name: str) -> None:
    _page_module()[name]()
