"""Print the chaos figures of the last run of each test as a Markdown table (for
docs/reliability.md): ``.venv/bin/python -m tests.chaos.figures_table [full|reduced]``."""

from __future__ import annotations

import json
import sys
from typing import Any

from tests.chaos.harness import FIGURES, SCALES


def latest(scale: str) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    if not FIGURES.exists():
        return rows
    for line in FIGURES.read_text().splitlines():
        entry = json.loads(line)
        if entry["scale"] == scale:
            rows[entry["row"]] = entry  # later lines win: the last run of each test
    return rows


def table(scale: str) -> str:
    lines = ["| row | measured at (UTC) | figures |", "|---|---|---|"]
    for row, entry in sorted(latest(scale).items(),
                             key=lambda item: (len(item[0].split("-")[0]), item[0])):
        values = ", ".join(f"{k}={v}" for k, v in entry.items()
                           if k not in ("row", "scale", "at"))
        lines.append(f"| {row} | {entry['at'][:19]} | {values} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    scale = argv[0] if argv else "full"
    if scale not in SCALES:
        print(f"usage: figures_table [{'|'.join(SCALES)}]", file=sys.stderr)
        return 2
    print(table(scale))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
