"""``fold`` changes one private draft in place for a whole stream; ``evolve`` copies per
event. Both must reach the same states, and neither may change a state it was given."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from record_histories import HISTORIES

from tasksaga.core import events as ev
from tasksaga.core.records import assigned, constructor, replaced
from tasksaga.core.state import StepState, StreamFold, TaskState, evolve, fold
from tasksaga.testing.harness import _codec
from tests.unit.test_fan_out_properties import Scenario, play
from tests.unit.test_fan_out_properties import scenarios as fan_out_scenarios
from tests.unit.test_saga_properties import definitions, run, scripts


def evolved(events: list[ev.TaskEvent], state: TaskState | None = None) -> list[TaskState]:
    """Every state of the evolve chain, each a new value."""
    states = [state or TaskState()]
    for event in events:
        states.append(evolve(states[-1], event))
    return states


def check_fold_matches_evolve(events: list[ev.TaskEvent]) -> None:
    chain = evolved(events)
    snapshots = copy.deepcopy(chain)
    assert fold(events) == chain[-1]
    for cut in (1, len(events) // 2, len(events) - 1):
        if 0 < cut < len(events):  # a fold that starts from a state part-way
            start = chain[cut]
            assert fold(events[cut:], start) == chain[-1]
    stepwise = StreamFold(chain[0])
    for event, expected in zip(events, chain[1:], strict=True):
        stepwise.apply(event)
        assert stepwise.current == expected  # what the projector reads between events
    assert stepwise.result() == chain[-1]
    assert chain == snapshots  # neither fold, StreamFold nor evolve changed a given state


@settings(max_examples=60, deadline=None)
@given(definitions(), st.sampled_from([1920, 3840]), scripts)
def test_fold_equals_the_evolve_chain_on_generated_sagas(
        task: object, width: int, script: list[tuple[str, int]]) -> None:
    driver = run(task, width, script)  # type: ignore[arg-type]
    check_fold_matches_evolve(driver.events)
    assert fold(driver.events) == driver.state


@settings(max_examples=30, deadline=None)
@given(fan_out_scenarios())
def test_fold_equals_the_evolve_chain_on_generated_fan_outs(scenario: Scenario) -> None:
    driver = play(*scenario)
    check_fold_matches_evolve(driver.events)


GOLDEN = sorted(HISTORIES.glob("*/*.json"))


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fold_equals_the_evolve_chain_on_golden_histories(path: Path) -> None:
    codec = _codec()
    history = json.loads(path.read_text())
    events = [codec.decode(base64.b64decode(raw)).payload
              for decision in history["decisions"] for raw in decision.get("events", [])]
    assert events, "a golden history without events proves nothing"
    check_fold_matches_evolve(events)


def test_folding_nothing_returns_the_state_given() -> None:
    state = evolve(TaskState(), ev.TaskSubmitted("t", "T", "{}", None, None, 1, None))
    assert fold([], state) is state


def test_replaced_copies_with_changes_and_refuses_unknown_fields() -> None:
    step = StepState("A", attempt=2)
    changed = replaced(step, attempt=3)
    assert changed == dataclasses.replace(step, attempt=3) and step.attempt == 2
    with pytest.raises(TypeError, match="no field"):
        replaced(step, attempts=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.attempt = 4  # type: ignore[misc]


def test_assigned_changes_the_draft_itself_and_refuses_unknown_fields() -> None:
    draft = replaced(StepState("A"), attempt=1)
    assert assigned(draft, attempt=5) is draft and draft.attempt == 5
    with pytest.raises(TypeError, match="no field"):
        assigned(draft, attempts=3)


def test_constructor_builds_the_same_value_and_keeps_init_errors_for_other_dicts() -> None:
    make = constructor(StepState)
    values = {f.name: getattr(StepState("A", attempt=2), f.name)
              for f in dataclasses.fields(StepState)}
    assert make(dict(values)) == StepState("A", attempt=2)
    assert make({"name": "B"}) == StepState("B")  # fields missing: through __init__
    with pytest.raises(TypeError):
        make({**values, "unknown": 1})


def test_a_stream_fold_that_ended_refuses_to_go_on() -> None:
    stepwise = StreamFold(TaskState())
    stepwise.apply(ev.TaskSubmitted("t", "T", "{}", None, None, 1, None))
    state = stepwise.result()
    with pytest.raises(RuntimeError, match="ended"):
        stepwise.apply(ev.TaskCancelled("late", 2))
    assert state.version == 1
