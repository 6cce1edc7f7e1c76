"""The pure core of versions: the fingerprint, the registry of versions, old logs, and when a
task may move to another version."""

from __future__ import annotations

import pytest

from tasksaga.core import TaskDefinition
from tasksaga.core import events as ev
from tasksaga.core.definition import DefinitionError
from tasksaga.core.fingerprint import fingerprint, graph_changes, migration_problem, step_graph
from tasksaga.core.registry import TaskRegistry, UnknownVersion
from tasksaga.core.state import TaskState, TaskStatus, fold
from tests.unit.versioned_sagas import Order, billing


def test_the_fingerprint_is_stable_and_ignores_handler_code() -> None:
    # Two builds have distinct handler functions (closures): the same graph, the same print.
    first, second = billing(1), billing(1)
    assert first.get_step("Charge").handler is not second.get_step("Charge").handler
    assert fingerprint(first) == fingerprint(second)
    assert fingerprint(first).startswith("sha256:") and len(fingerprint(first)) == 39


@pytest.mark.parametrize("changed", [
    billing(1, reserve_name="Hold"), billing(1, charge_retries=3), billing(1, extra_step=True),
], ids=["renamed step", "retry policy", "added step"])
def test_the_fingerprint_changes_with_the_step_graph(changed: TaskDefinition) -> None:
    assert fingerprint(changed) != fingerprint(billing(1))
    assert graph_changes(step_graph(billing(1)), step_graph(changed))


def test_graph_changes_name_the_step_and_what_changed() -> None:
    changes = graph_changes(step_graph(billing(1)), step_graph(billing(1, charge_retries=3)))
    assert len(changes) == 1 and changes[0].startswith("step 'Charge': retry {")
    renamed = graph_changes(step_graph(billing(1)), step_graph(billing(1, reserve_name="Hold")))
    assert renamed == ["step 'Reserve' was removed", "step 'Hold' was added"]


def test_the_registry_serves_each_version_and_the_newest_by_default() -> None:
    registry = TaskRegistry([billing(2), billing(1)])
    assert registry.get("Billing").version == 2
    assert registry.get("Billing", 1).version == 1
    assert registry.versions("Billing") == [1, 2]
    assert [d.version for d in registry] == [2]
    with pytest.raises(UnknownVersion, match="has no version 3 deployed; deployed versions: "
                                             r"\[1, 2\]"):
        registry.get("Billing", 3)
    with pytest.raises(DefinitionError, match="version 1 is registered twice"):
        registry.register(billing(1))


def test_a_version_must_be_a_positive_integer() -> None:
    with pytest.raises(ValueError, match="must be an integer >= 1, got 0"):
        TaskDefinition("T", queue="q", request=Order, version=0)


def test_a_log_written_before_versions_folds_as_version_1() -> None:
    old = ev.TaskSubmitted("t", "Billing", "{}", None, None, 1, None)
    state = fold([old])
    assert (state.definition_version, state.definition_fingerprint) == (1, "")


def _running_after_reserve() -> TaskState:
    return fold([ev.TaskSubmitted("t", "Billing", "{}", None, None, 1, None),
                 ev.StepDispatched("Reserve", 1, "billing", 1, 2, 2),
                 ev.StepCompleted("Reserve", 1, '{"by": "v1"}', 3),
                 ev.StepDispatched("Charge", 1, "billing", 3, 4, 4)])


def test_a_version_changing_only_retry_policies_is_compatible() -> None:
    state = _running_after_reserve()
    assert migration_problem(state, billing(1), billing(2, charge_retries=5)) is None
    assert migration_problem(state, None, billing(2, charge_retries=5)) is None


def test_a_version_renaming_or_reshaping_a_recorded_step_is_incompatible() -> None:
    state = _running_after_reserve()
    renamed = migration_problem(state, None, billing(2, reserve_name="Hold"))
    assert renamed is not None and "step 'Reserve', recorded in the task" in renamed.reason
    uncompensated = billing(2)
    uncompensated.get_step("Reserve").compensation = None
    problem = migration_problem(state, billing(1), uncompensated)
    assert problem is not None and "compensation True -> False" in problem.reason


def test_the_parked_status_goes_back_to_where_the_task_was() -> None:
    state = fold([ev.TaskSubmitted("t", "Billing", "{}", None, None, 1, None),
                  ev.TaskVersionMissing(1, [2], 5), ev.MessageParked("StepSucceeded", "x", 5),
                  ev.TaskVersionMissing(1, [2], 6)])
    assert state.status is TaskStatus.VERSION_MISSING and len(state.parked) == 1
    assert state.end_reason is not None and state.end_reason.startswith(
        "version 1 of Billing is not deployed (deployed: [2]): parked")
    resumed = fold([ev.TaskMigrated(1, 3, "sha256:x", "operator migrate", 7)], state)
    assert (resumed.status, resumed.definition_version, resumed.parked, resumed.end_reason) == (
        TaskStatus.RUNNING, 3, (), None)


def test_retry_policy_is_counted_in_the_graph() -> None:
    graph = step_graph(billing(1, charge_retries=2))
    assert graph["Charge"]["retry"] == {
        "max_retries": 2, "backoff": "exponential", "delay_ms": 1000, "max_delay_ms": 60_000,
        "jitter": 0.0, "retry_on": [], "never_retry_on": []}
