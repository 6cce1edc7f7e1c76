"""A task that ended leaves no timer behind: every deadline of an attempt that ended (step,
heartbeat, compensation) and the task's own timeout are deleted with the event that ended them.

Left in place, each fired later for nothing, a transaction and a load of the task's state per
step ever run: in the e2e suite a fresh orchestrator spent 90 s firing a previous module's
300 leftover step timeouts before it reached the one sleep it had to wake.
"""

from __future__ import annotations

from tasksaga.core import messages as msg
from tasksaga.core.state import TaskStatus
from tasksaga.testing import SagaTestRun
from tasksaga_examples.barista import CoffeeOrder, perform_duties
from tasksaga_examples.order_fulfilment import OrderRequest, fulfil_order


def _order(**failure: object) -> OrderRequest:
    return OrderRequest.model_validate({"order_id": "o-1", "sku": "SKU-1", "quantity": 2,
                                        "amount_cents": 1250, "email": "buyer@example.com",
                                        **failure})


def test_a_completed_saga_leaves_no_timer() -> None:
    run = SagaTestRun(fulfil_order)
    run.submit(_order()).assert_completed()
    assert run.store.timers() == []


def test_a_compensated_saga_leaves_no_timer_and_its_retries_fired_theirs() -> None:
    run = SagaTestRun(fulfil_order)
    # ChargeCard's service is down for good: its retries run, then compensation.
    task = run.submit(_order(outage_at="ChargeCard"))
    assert task.status is TaskStatus.FAILED
    assert run.store.timers() == []


def test_a_completed_workflow_leaves_no_timer() -> None:
    run = SagaTestRun(perform_duties)
    run.submit(CoffeeOrder(drink="latte", customer="ann")).assert_completed()
    assert run.store.timers() == []


def test_the_task_timeout_is_deleted_by_the_end_of_the_task() -> None:
    run = SagaTestRun(fulfil_order)
    run.faults.hang("Ship", times=1)  # Ship's first attempt never answers
    run.submit(_order(), settle=False)
    kinds = {timer.kind for _, timer in run.store.timers()}
    # Armed at submission (timeout_seconds=600), and Ship's deadline.
    assert {msg.TimerKind.TASK_TIMEOUT, msg.TimerKind.STEP_TIMEOUT} <= kinds
    run.run_until_settled()  # Ship times out, is retried and completes
    run.task().assert_completed()
    assert run.store.timers() == []
