"""The committed golden histories (tests/fixtures/histories/, written by
tools/record_histories.py from real in-process runs) replay through the current codec, fold and
decide: every recorded message is decided again into the recorded events, commands and timers,
and the log folds into the recorded final state. A change that decides old runs differently,
or can no longer read their logs, fails here."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from record_histories import DEFINITIONS, HISTORIES, SCENARIOS

from tasksaga.testing.harness import _codec
from tasksaga.testing.histories import replay
from tasksaga_examples.zip_archive import create_zip

FILES = sorted(HISTORIES.glob("*/*.json"))


def load(path: Path) -> dict[str, Any]:
    history: dict[str, Any] = json.loads(path.read_text())
    return history


def test_every_scenario_of_the_recorder_has_a_committed_history() -> None:
    expected = {f"{e}/{s}" for e, scenarios in SCENARIOS.items() for s in scenarios}
    assert {f"{p.parent.name}/{p.stem}" for p in FILES} == expected


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_committed_history_replays_to_its_recorded_decisions(path: Path) -> None:
    history = load(path)
    assert history["decisions"], "a history without decisions proves nothing"
    assert replay(history, DEFINITIONS, _codec()) == []


def test_a_definition_that_decides_differently_fails_the_replay() -> None:
    changed = copy.copy(create_zip)
    changed.step_timeout_seconds = 1.0  # every dispatch's deadline moves
    others = [d for d in DEFINITIONS if d.name != "CreateZip"]
    problems = replay(load(HISTORIES / "zip" / "success.json"), [changed, *others], _codec())
    assert any("commands differ" in p for p in problems)
    assert any("timers" in p for p in problems)


def test_a_recorded_event_the_code_no_longer_produces_fails_the_replay() -> None:
    history = load(HISTORIES / "zip" / "failure_with_compensation.json")
    last = history["decisions"][-1]
    last["events"] = last["events"][:-1]  # as if the task had not ended
    problems = replay(history, DEFINITIONS, _codec())
    assert any(p.startswith(f"decision {len(history['decisions']) - 1}") for p in problems)
    assert any("final state differs in ['status'" in p for p in problems)
