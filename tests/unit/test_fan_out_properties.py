"""Properties of for_each over arbitrary interleavings of instance outcomes (hypothesis),
and the cost of deciding and folding a 1,000-item fan-out (printed, not asserted)."""

from __future__ import annotations

import json
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from tasksaga.core import AwaitMode, RetryPolicy
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.decide import decide
from tasksaga.core.fan_out_names import parse_instance
from tasksaga.core.state import StepStatus, TaskState, TaskStatus, fold
from tests.unit.fan_out_sagas import fan_out, instance_result
from tests.unit.sagas import Driver, Req

IN_FLIGHT = (StepStatus.RUNNING, StepStatus.RETRY_SCHEDULED)


Scenario = tuple[int, int | None, AwaitMode, int | None, list[tuple[str, int]], bool]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    items = draw(st.integers(0, 10))
    max_parallel = draw(st.one_of(st.none(), st.integers(1, 4)))
    mode = draw(st.sampled_from(list(AwaitMode)))
    quorum = draw(st.integers(1, items + 1)) if mode is AwaitMode.QUORUM else None
    script = draw(st.lists(st.tuples(st.sampled_from(["succeed", "retry", "fail", "tick"]),
                                     st.integers(0, 50)), max_size=40))
    return items, max_parallel, mode, quorum, script, draw(st.booleans())


def instances(d: Driver, *statuses: StepStatus) -> list[str]:
    fan_out = d.state.fan_outs.get("Each")
    if fan_out is None:
        return []
    return [s.name for s in fan_out.instances if s is not None and s.status in statuses]


def check_invariants(d: Driver, max_parallel: int | None) -> None:
    if max_parallel is not None:
        assert len(instances(d, *IN_FLIGHT)) <= max_parallel
    first_dispatches = [parse_instance(e.step) for e in d.events
                        if isinstance(e, ev.StepDispatched) and e.attempt == 1
                        and e.step.startswith("Each[")]
    assert [p[1] for p in first_dispatches if p] == list(range(len(first_dispatches)))


def play(items: int, max_parallel: int | None, mode: AwaitMode, quorum: int | None,
         script: list[tuple[str, int]], pivot: bool) -> Driver:
    """Past the pivot (``pivot``), a task left to an operator is retried forward once."""
    d = Driver(fan_out(mode, max_parallel=max_parallel, quorum=quorum, pivot=pivot,
                       retry=RetryPolicy(max_retries=1, delay_ms=100)))
    d.submit(width=items)
    d.succeed("Prepare")
    retried = False
    for outcome, pick in [*script, *[("succeed", 0)] * 80]:  # then drain: everything succeeds
        if d.state.status is TaskStatus.NEEDS_ATTENTION and not retried:
            if d.state.step("Each").status is StepStatus.FAILED:  # the fan-out is what failed
                assert not instances(d, *IN_FLIGHT)  # forward recovery waited for them
            d.send(msg.RetryForward("t1", d.now))
            retried = True
        if d.state.status.is_terminal:
            break
        check_invariants(d, max_parallel)
        compensating = d.compensating()
        running = instances(d, StepStatus.RUNNING) + [
            s for s in ("Publish",) if d.state.step(s).status is StepStatus.RUNNING]
        if compensating:
            d.compensated(compensating[0])
        elif outcome == "tick" or not running:
            d.advance(100)
        elif outcome == "succeed":
            name = running[pick % len(running)]
            d.send(instance_result(d, name) if name != "Publish" else
                   msg.StepSucceeded("t1", name, d.state.step(name).attempt, "{}"))
        else:
            d.fail(running[pick % len(running)], retryable=outcome == "retry")
    check_invariants(d, max_parallel)
    return d


@settings(max_examples=40, deadline=None)
@given(scenarios())
def test_max_parallel_is_never_exceeded_and_instances_start_in_item_order(
        scenario: Scenario) -> None:
    d = play(*scenario)
    assert d.state.status.is_terminal


@settings(max_examples=40, deadline=None)
@given(scenarios())
def test_the_outcome_follows_the_mode_and_results_are_in_item_order(
        scenario: Scenario) -> None:
    items, _, mode, quorum, _, _ = scenario
    d = play(*scenario)
    required = {AwaitMode.ALL: items, AwaitMode.ANY: min(items, 1),
                AwaitMode.QUORUM: (quorum or 0) if items else 0}[mode]
    closing = next((e for e in d.events if isinstance(e, ev.FanOutCompleted | ev.StepFailed)
                    and e.step == "Each" and not (isinstance(e, ev.StepFailed)
                                                  and e.error_type == "Cancelled")), None)
    assert closing is not None
    # Replay up to the closing event: what the group saw when it decided.
    seen = fold(d.events[:d.events.index(closing)])
    fan_out = seen.fan_outs["Each"]
    succeeded = fan_out.count(StepStatus.COMPLETED)
    if isinstance(closing, ev.FanOutCompleted):
        assert succeeded >= required and closing.succeeded == succeeded
        pages = [v["page"] for v in json.loads(
            fold(d.events[:d.events.index(closing) + 1]).step("Each").data_json or "")]
        assert pages == sorted(pages) and len(pages) == succeeded
    else:
        assert closing.error_type == "FanOutFailed"
        assert items - fan_out.count(StepStatus.FAILED) < required


@settings(max_examples=30, deadline=None)
@given(scenarios())
def test_a_failed_task_compensates_every_completed_instance_in_reverse_item_order(
        scenario: Scenario) -> None:
    d = play(*scenario)
    if d.state.status is not TaskStatus.FAILED:
        return
    compensated = [parse_instance(e.step) for e in d.events
                   if isinstance(e, ev.StepCompensated) and e.step.startswith("Each[")]
    indices = [p[1] for p in compensated if p]
    assert indices == sorted(indices, reverse=True)
    assert instances(d, StepStatus.COMPLETED) == []
    assert d.state.step("Prepare").status is StepStatus.COMPENSATED


def test_deciding_and_folding_a_1000_item_fan_out_is_linear_enough_to_print() -> None:
    """Every instance succeeds; the figures are printed (run with -s), not asserted."""
    task = fan_out(max_parallel=50)
    state, now, events = TaskState(), 1_000_000, []
    decide_s = 0.0
    pending: list[msg.ExecuteStep] = []

    def step(message: msg.Inbound) -> None:
        nonlocal state, decide_s
        started = time.perf_counter()
        decision = decide(task, state, message, now, lambda: 0.0)
        decide_s += time.perf_counter() - started
        state = decision.state
        events.extend(decision.events)
        pending.extend(c for c in decision.commands if isinstance(c, msg.ExecuteStep))

    step(msg.SubmitTask("t1", task.name, Req(width=1000).model_dump_json(), None, None, now))
    while pending:
        command = pending.pop(0)
        page = json.loads(command.item_json) if command.item_json else {"number": -1}
        step(msg.StepSucceeded("t1", command.step, command.attempt,
                               json.dumps({"page": page["number"]}), command.fencing_token))
    started = time.perf_counter()
    folded = fold(events)
    fold_s = time.perf_counter() - started
    print(f"\n1,000-item fan-out: {len(events)} events; decide {decide_s * 1000:.0f} ms "
          f"({decide_s / len(events) * 1e6:.0f} us/event), fold {fold_s * 1000:.0f} ms")
    assert folded == state and state.status is TaskStatus.COMPLETED
    assert [v["page"] for v in json.loads(state.step("Each").data_json or "")] == list(
        range(1000))
