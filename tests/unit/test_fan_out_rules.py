"""The rules of task.for_each on the pure core: expansion, bounds, modes, compensation."""

from __future__ import annotations

import json

from tasksaga.core import AwaitMode, RetryPolicy
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.audit import describe
from tasksaga.core.state import StepStatus, TaskStatus
from tests.unit.fan_out_sagas import Thumb, fan_out, instance_result
from tests.unit.sagas import Driver


def started(task_width: int, **options: object) -> Driver:
    d = Driver(fan_out(**options))  # type: ignore[arg-type]
    d.submit(width=task_width)
    d.succeed("Prepare")
    return d


def each_dispatched(d: Driver) -> list[str]:
    return [s for s in d.dispatched() if s.startswith("Each[")]


def test_the_step_expands_into_one_instance_per_item_each_command_carrying_its_item() -> None:
    d = started(3)
    expanded = [e for e in d.events if isinstance(e, ev.FanOutExpanded)]
    assert [json.loads(i) for i in expanded[0].items_json] == [{"number": n} for n in range(3)]
    commands = [c for c in d.commands
                if isinstance(c, msg.ExecuteStep) and c.item_index is not None]
    assert [(c.step, c.item_index, c.item_json) for c in commands] == [
        (f"Each[{n}]", n, json.dumps({"number": n}, separators=(",", ":"))) for n in range(3)]
    assert [c.idempotency_key for c in commands] == [f"t1:Each[{n}]:1" for n in range(3)]


def test_results_are_gathered_in_item_order_whatever_order_the_instances_finish_in() -> None:
    d = started(4)
    for name in ("Each[2]", "Each[0]", "Each[3]", "Each[1]"):
        d.send(instance_result(d, name))
    assert d.state.step("Each").status is StepStatus.COMPLETED
    assert [Thumb.model_validate(v).page for v in json.loads(d.state.step("Each").data_json
                                                              or "")] == [0, 1, 2, 3]
    publish = next(c for c in d.commands if isinstance(c, msg.ExecuteStep)
                   and c.step == "Publish")
    assert json.loads(publish.step_data["Each"]) == [{"page": n} for n in range(4)]
    assert "Each[0]" not in publish.step_data  # instances travel as the step's list only


def test_an_empty_list_completes_the_step_at_once() -> None:
    d = started(0)
    assert d.state.step("Each").status is StepStatus.COMPLETED
    assert d.state.step("Each").data_json == "[]"
    assert d.dispatched()[-1] == "Publish"


def test_max_parallel_starts_the_rest_in_item_order_as_slots_free_up() -> None:
    d = started(5, max_parallel=2, retry=RetryPolicy(max_retries=1, delay_ms=100))
    assert each_dispatched(d) == ["Each[0]", "Each[1]"]
    d.send(instance_result(d, "Each[1]"))
    assert each_dispatched(d) == ["Each[0]", "Each[1]", "Each[2]"]
    d.fail("Each[0]", retryable=True)  # waiting for its retry still holds its slot
    assert each_dispatched(d) == ["Each[0]", "Each[1]", "Each[2]"]
    d.send(instance_result(d, "Each[2]"))
    assert each_dispatched(d)[-1] == "Each[3]"


def test_each_instance_retries_on_its_own_policy_and_attempt_numbers() -> None:
    d = started(2, retry=RetryPolicy(max_retries=2, delay_ms=100))
    d.fail("Each[1]", retryable=True)
    assert d.state.step("Each[1]").status is StepStatus.RETRY_SCHEDULED
    assert d.state.step("Each[0]").attempt == 1
    d.advance(100)
    assert d.state.step("Each[1]").attempt == 2
    assert d.dispatched().count("Each[1]") == 2


def test_an_instance_without_a_result_times_out_and_is_retried() -> None:
    d = started(2, retry=RetryPolicy(max_retries=1, delay_ms=10))
    d.send(instance_result(d, "Each[0]"))
    d.advance(330_000 + 1)  # start timeout (300 s) + step timeout (30 s)
    failure = [e for e in d.events if isinstance(e, ev.StepFailed) and e.step == "Each[1]"]
    assert failure[0].error_type == "StepTimedOut" and failure[0].will_retry


def test_all_mode_one_permanent_failure_stops_the_rest_and_compensates_in_reverse_item_order(
) -> None:
    d = started(5, max_parallel=4)
    for name in ("Each[0]", "Each[2]", "Each[1]"):
        d.send(instance_result(d, name))
    d.fail("Each[3]", retryable=False)
    assert d.state.step("Each").status is StepStatus.FAILED
    assert d.state.step("Each").error_type == "FanOutFailed"
    assert "Each[3]" in (d.state.step("Each").error_message or "")
    assert d.cancels() == ["Each[4]"]
    assert "Each[5]" not in d.dispatched()
    d.send(msg.StepAttemptFailed("t1", "Each[4]", 1, "Cancelled", "stopped", False))
    order = []
    while d.state.status is TaskStatus.COMPENSATING:
        step = d.compensations()[-1]
        order.append(step)
        d.compensated(step)
    assert order == ["Each[2]", "Each[1]", "Each[0]", "Prepare"]
    assert d.state.status is TaskStatus.FAILED


def test_a_later_failure_compensates_the_completed_fan_out_in_reverse_item_order() -> None:
    d = started(3)
    for name in ("Each[1]", "Each[0]", "Each[2]"):
        d.send(instance_result(d, name))
    d.fail("Publish", retryable=False)
    order = []
    while d.state.status is TaskStatus.COMPENSATING:
        step = d.compensations()[-1]
        order.append(step)
        d.compensated(step)
    assert order == ["Each[2]", "Each[1]", "Each[0]", "Prepare"]


def test_any_mode_the_first_success_completes_the_step_and_stops_the_others() -> None:
    d = started(4, mode=AwaitMode.ANY, retry=RetryPolicy(max_retries=1, delay_ms=500))
    d.fail("Each[0]", retryable=True)
    d.send(instance_result(d, "Each[2]"))
    assert d.state.step("Each").status is StepStatus.COMPLETED
    assert sorted(d.cancels()) == ["Each[1]", "Each[3]"]
    assert d.state.step("Each[0]").error_type == "Superseded"
    assert json.loads(d.state.step("Each").data_json or "") == [{"page": 2}]
    assert d.dispatched()[-1] == "Publish"  # the saga moves on at once
    d.succeed("Publish")
    assert d.state.status is TaskStatus.RUNNING  # the task ends once the others answered
    d.send(msg.StepAttemptFailed("t1", "Each[1]", 1, "Cancelled", "stopped", False))
    d.send(msg.StepAttemptFailed("t1", "Each[3]", 1, "Cancelled", "stopped", False))
    assert d.state.status is TaskStatus.COMPLETED


def test_quorum_mode_completes_at_its_count_and_fails_once_it_is_out_of_reach() -> None:
    d = started(4, mode=AwaitMode.QUORUM, quorum=3)
    d.send(instance_result(d, "Each[0]"))
    d.fail("Each[1]", retryable=False)
    assert d.state.step("Each").status is StepStatus.RUNNING  # 3 of the 3 left may succeed
    d.fail("Each[2]", retryable=False)
    assert d.state.step("Each").status is StepStatus.FAILED
    assert "3 successes can no longer be reached" in (d.state.step("Each").error_message or "")
    assert d.state.status is TaskStatus.COMPENSATING


def test_a_quorum_fraction_is_of_the_items_rounded_up() -> None:
    d = started(5, mode=AwaitMode.QUORUM, quorum=0.5)
    d.send(instance_result(d, "Each[4]"))
    d.send(instance_result(d, "Each[0]"))
    assert d.state.step("Each").status is StepStatus.RUNNING
    d.send(instance_result(d, "Each[3]"))
    assert d.state.step("Each").status is StepStatus.COMPLETED


def test_a_quorum_count_above_the_number_of_items_fails_when_the_step_expands() -> None:
    d = started(2, mode=AwaitMode.QUORUM, quorum=3)
    assert d.state.step("Each").status is StepStatus.FAILED
    assert "quorum 3 cannot be reached with 2 items" in (d.state.step("Each").error_message or "")
    assert each_dispatched(d) == []


def test_an_items_function_that_raises_fails_the_step_with_a_clear_error() -> None:
    def broken(ctx: object) -> list[int]:
        raise RuntimeError("catalogue offline")

    d = started(3, items=broken)
    record = d.state.step("Each")
    assert record.status is StepStatus.FAILED and record.error_type == "FanOutItemsError"
    assert "broken" in (record.error_message or "")
    assert "RuntimeError: catalogue offline" in (record.error_message or "")
    assert d.compensations() == ["Prepare"]


def test_items_that_are_not_a_list_or_not_json_able_are_refused_by_name() -> None:
    d = started(3, items=lambda ctx: {"a": 1})
    assert "items must return a list, got dict" in (d.state.step("Each").error_message or "")
    d = started(3, items=lambda ctx: [1, object()])
    assert "item 1 is neither a pydantic model nor JSON-able" in (
        d.state.step("Each").error_message or "")


def test_too_many_items_or_too_large_ones_are_refused_with_the_limit() -> None:
    d = started(3, items=lambda ctx: list(range(10_001)))
    assert "10001 items, over the limit of 10000" in (d.state.step("Each").error_message or "")
    d = started(3, items=lambda ctx: ["x" * 200_000] * 3)
    assert "bytes of JSON, over the limit of 524288" in (d.state.step("Each").error_message
                                                         or "")


def test_cancelling_the_task_stops_running_instances_and_compensates_completed_ones() -> None:
    d = started(3)
    d.send(instance_result(d, "Each[1]"))
    d.send(msg.CancelTask("t1", "user", d.now))
    assert sorted(d.cancels()) == ["Each[0]", "Each[2]"]
    assert d.state.step("Each").error_type == "Cancelled"
    assert d.compensations() == []  # the running instances answer first
    d.send(msg.StepAttemptFailed("t1", "Each[0]", 1, "Cancelled", "stopped", False))
    d.send(instance_result(d, "Each[2]"))  # it finished anyway: its effect is compensated too
    assert d.compensations() == ["Each[2]"]
    d.compensated("Each[2]")
    d.compensated("Each[1]")
    d.compensated("Prepare")
    assert d.state.status is TaskStatus.CANCELLED


def test_a_compensation_command_carries_the_instance_item_and_its_data() -> None:
    d = started(2)
    d.send(instance_result(d, "Each[0]"))
    d.send(instance_result(d, "Each[1]"))
    d.fail("Publish", retryable=False)
    command = next(c for c in d.commands if isinstance(c, msg.CompensateStep))
    assert (command.step, command.item_index, command.item_json) == (
        "Each[1]", 1, '{"number":1}')
    assert json.loads(command.step_data["Each[1]"]) == {"page": 1}


def test_a_duplicate_or_unknown_instance_result_changes_nothing() -> None:
    d = started(2)
    d.send(instance_result(d, "Each[0]"))
    again = instance_result(d, "Each[0]")
    assert d.send(again).is_empty
    assert d.send(msg.StepSucceeded("t1", "Each[7]", 1, "{}")).is_empty


def test_past_the_pivot_a_failed_fan_out_waits_for_its_running_instances_then_an_operator(
) -> None:
    d = started(4, pivot=True, max_parallel=2, retry=RetryPolicy(max_retries=1, delay_ms=10))
    d.fail("Each[0]", retryable=False)
    assert d.state.step("Each").status is StepStatus.RUNNING  # Each[1] still runs
    assert each_dispatched(d) == ["Each[0]", "Each[1]"] and d.cancels() == []
    d.send(instance_result(d, "Each[1]"))
    assert d.state.step("Each").error_type == "FanOutFailed"
    assert d.state.status is TaskStatus.NEEDS_ATTENTION
    assert d.compensations() == []
    d.send(msg.RetryForward("t1", d.now))
    retried = [e for e in d.events if isinstance(e, ev.FanOutRetried)]
    assert [(e.step, e.attempt, e.retried) for e in retried] == [("Each", 2, 1)]
    assert describe(retried[0]) == ("step Each retried forward: its 1 failed instances run "
                                    "again, each with a fresh retry budget")
    assert [(c.step, c.attempt) for c in d.commands if isinstance(c, msg.ExecuteStep)][-2:] == [
        ("Each[0]", 2), ("Each[2]", 1)]
    d.fail("Each[0]", retryable=True)  # a fresh budget: its one retry is there again
    assert d.state.step("Each[0]").status is StepStatus.RETRY_SCHEDULED
    d.advance(10)
    for name in ("Each[0]", "Each[2]"):
        d.send(instance_result(d, name))
    d.send(instance_result(d, "Each[3]"))
    assert [v["page"] for v in json.loads(d.state.step("Each").data_json or "")] == [0, 1, 2, 3]
    d.succeed("Publish")
    assert d.state.status is TaskStatus.COMPLETED


def test_a_redrive_resends_the_instances_in_flight_with_their_items_not_the_step() -> None:
    d = started(3)
    d.send(instance_result(d, "Each[1]"))
    before = len(d.commands)
    d.send(msg.RedriveTask("t1", "stuck", "ops", d.now))
    resent = [c for c in d.commands[before:] if isinstance(c, msg.ExecuteStep)]
    assert [(c.step, c.item_index, c.item_json) for c in resent] == [
        ("Each[0]", 0, '{"number":0}'), ("Each[2]", 2, '{"number":2}')]


def test_a_finished_instance_deletes_its_deadline_instead_of_leaving_it_to_fire() -> None:
    d = started(2)
    done = d.send(instance_result(d, "Each[0]"))
    assert done.unscheduled == [msg.TimerFired("t1", msg.TimerKind.STEP_TIMEOUT, "Each[0]", 1)]
    failed = d.fail("Each[1]", retryable=False)
    assert msg.TimerFired("t1", msg.TimerKind.STEP_TIMEOUT, "Each[1]", 1) in failed.unscheduled
    assert d.send(msg.StepSucceeded("t1", "Prepare", 1, "{}")).unscheduled == []
