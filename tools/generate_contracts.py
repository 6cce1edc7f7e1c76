#!/usr/bin/env python3
"""Writes contracts/*.avsc from the message dataclasses (run after changing a message)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tasksaga.adapters.avro_schemas import build_schemas

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"


def render(schema: object) -> str:
    return json.dumps(schema, indent=2) + "\n"


def main() -> int:
    for stem, schema in build_schemas().items():
        path = CONTRACTS / f"{stem}.avsc"
        path.write_text(render(schema))
        print(f"wrote {path.relative_to(CONTRACTS.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
