"""Properties of decide() over arbitrary interleavings of step outcomes (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tasksaga.core import RetryPolicy
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.definition import AwaitMode, TaskDefinition
from tasksaga.core.state import StepStatus, TaskStatus
from tests.unit.sagas import Driver, any_group, grouped, linear

OUTCOMES = ("succeed", "fail", "fail_final", "cancel", "tick")


def definitions() -> st.SearchStrategy[TaskDefinition]:
    def with_retries(task: TaskDefinition) -> TaskDefinition:
        for step in task.steps:
            step.retry = RetryPolicy(max_retries=1, delay_ms=100)
        return task

    def build(kind: str) -> TaskDefinition:
        if kind == "linear":
            return with_retries(linear(4))
        if kind == "grouped":
            return with_retries(grouped())
        if kind == "any":
            return with_retries(any_group())
        return with_retries(any_group(AwaitMode.QUORUM, quorum=2))

    return st.sampled_from(["linear", "grouped", "any", "quorum"]).map(build)


def run(task: TaskDefinition, width: int, script: list[tuple[str, int]]) -> Driver:
    """Play the script against the saga; compensations always succeed; bounded turns."""
    d = Driver(task)
    d.submit(width=width)
    for outcome, pick in script:
        if d.state.status.is_terminal:
            break
        compensating = d.compensating()
        if compensating:
            d.compensated(compensating[0])
            continue
        running = d.running()
        if outcome == "cancel":
            d.send(msg.CancelTask("t1", "property test", d.now))
        elif outcome == "tick" or not running:
            d.advance(100)
        else:
            step = running[pick % len(running)]
            if outcome == "succeed":
                d.succeed(step)
            else:
                d.fail(step, retryable=outcome == "fail")
    # Drain: every running step answers, timers fire, compensations succeed.
    for _ in range(200):
        if d.state.status.is_terminal:
            break
        if d.compensating():
            d.compensated(d.compensating()[0])
        elif d.running():
            d.succeed(d.running()[0])
        else:
            d.advance(100_000)
    return d


scripts = st.lists(st.tuples(st.sampled_from(OUTCOMES), st.integers(0, 5)), max_size=30)


@settings(max_examples=300, deadline=None)
@given(definitions(), st.sampled_from([1920, 3840]), scripts)
def test_compensations_are_exactly_the_completed_steps_in_reverse_completion_order(
    task: TaskDefinition, width: int, script: list[tuple[str, int]]
) -> None:
    d = run(task, width, script)
    assert d.state.status.is_terminal
    if d.state.status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
        expected = [s for s in reversed(d.state.completion_order)
                    if task.get_step(s).has_compensation]
        assert d.compensations() == expected
        assert all(d.state.step(s).status is StepStatus.COMPENSATED for s in expected)
        never_done = [s.name for s in task.steps if s.name not in d.state.completion_order]
        assert not set(never_done) & set(d.compensations())  # failed, skipped: untouched
    else:
        assert d.state.status == TaskStatus.COMPLETED
        assert d.compensations() == []


@settings(max_examples=300, deadline=None)
@given(definitions(), st.sampled_from([1920, 3840]), scripts)
def test_no_step_is_dispatched_after_cancellation_is_recorded(
    task: TaskDefinition, width: int, script: list[tuple[str, int]]
) -> None:
    d = run(task, width, script)
    cancelled_at = next((i for i, e in enumerate(d.events)
                         if isinstance(e, ev.CancellationRequested)), None)
    if cancelled_at is not None:
        later = d.events[cancelled_at:]
        assert not any(isinstance(e, ev.StepDispatched) for e in later)
        assert d.state.status == TaskStatus.CANCELLED


@settings(max_examples=200, deadline=None)
@given(definitions(), st.sampled_from([1920, 3840]), scripts)
def test_folding_the_emitted_events_gives_the_decided_state(
    task: TaskDefinition, width: int, script: list[tuple[str, int]]
) -> None:
    from tasksaga.core.state import fold

    d = run(task, width, script)
    assert fold(d.events) == d.state
    assert d.state.version == len(d.events)
