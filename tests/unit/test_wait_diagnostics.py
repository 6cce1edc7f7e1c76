"""tasksaga-check on wait_for and sleep steps (TS130-TS133), and the example passes."""

from __future__ import annotations

from tasksaga.check import check_modules
from tasksaga.core.diagnostics import diagnose
from tests.unit.wait_sagas import approval_flow, sleep_until


def test_every_wait_and_sleep_mistake_is_reported_with_its_code() -> None:
    out: list[str] = []
    assert check_modules(["tests.unit.fixtures.broken_waits"], out) == 1
    codes = sorted(line.split(": ")[1].split()[0] for line in out)
    assert codes == ["TS130", "TS131", "TS131", "TS132", "TS132", "TS133", "TS133"]
    assert any("needs exactly one of seconds= and until=" in line for line in out)


def test_wait_and_sleep_steps_need_no_handler() -> None:
    assert diagnose(approval_flow()) == []
    assert diagnose(sleep_until()) == []


def test_the_expense_approval_example_passes() -> None:
    out: list[str] = []
    assert check_modules(["tasksaga_examples.expense_approval"], out) == 0
    assert out == ["tasksaga_examples.expense_approval:ExpenseApproval: ok (4 steps)"]
