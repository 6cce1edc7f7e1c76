from __future__ import annotations

from tasksaga.check import check_modules


def test_the_cli_lists_every_diagnostic_with_its_code_and_fails() -> None:
    out: list[str] = []
    assert check_modules(["tests.unit.fixtures.broken_tasks"], out) == 1
    codes = sorted({line.split(": ")[1].split()[0] for line in out})
    assert codes == ["TS101", "TS103", "TS104", "TS110", "TS111", "TS114", "TS115"]
    assert all(line.startswith("tests.unit.fixtures.broken_tasks:Broken: ") for line in out)


def test_the_cli_passes_the_examples() -> None:
    out: list[str] = []
    assert check_modules(["tasksaga_examples.zip_archive"], out) == 0
    assert out == ["tasksaga_examples.zip_archive:CreateZip: ok (3 steps)"]


def test_an_unimportable_module_is_exit_2() -> None:
    out: list[str] = []
    assert check_modules(["tests.unit.fixtures.no_such_module"], out) == 2
