"""What a peer's sweep process shares: its command line and its JSON result file."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.sweep import SweepPlan


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workload", required=True)
    parser.add_argument("--plan", required=True, help="SweepPlan as JSON")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--stack-pids", default="{}", help="JSON name -> pid")
    return parser.parse_args()


def plan_to_json(plan: SweepPlan) -> str:
    return json.dumps(asdict(plan))


def plan_from_json(raw: str) -> SweepPlan:
    return SweepPlan(**json.loads(raw))


def write_result(path: Path, result: dict[str, Any], problems: list[str],
                 extra: dict[str, Any] | None = None) -> None:
    public = {k: v for k, v in result.items() if k != "records"}
    public["check_problems"] = problems[:20]
    public["check_problem_count"] = len(problems)
    public["tasks_checked"] = len(result.get("records", []))
    public.update(extra or {})
    path.write_text(json.dumps(public, indent=1))


def log(line: str) -> None:
    print(line, flush=True)
    sys.stdout.flush()
