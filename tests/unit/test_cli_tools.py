"""``tasksaga check`` and ``tasksaga replay``, and the errors every command shares."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tasksaga.adapters.projections import StreamPartition
from tasksaga.adapters.replay import fold_steps
from tasksaga.adapters.replay import main as replay_main
from tasksaga.cli import exit_codes
from tasksaga.cli.app import app
from tasksaga.cli.tool_commands import importable, step_changes
from tasksaga.core import events as ev
from tasksaga.core.envelope import Envelope
from tests.unit.cli_fakes import FakeApi, run


def test_check_passes_the_example_and_lists_a_broken_modules_codes() -> None:
    ok = run(FakeApi(), "check", "tasksaga_examples.zip_archive")
    assert ok.exit_code == 0
    assert "tasksaga_examples.zip_archive:CreateZip: ok (3 steps)" in ok.output
    broken = run(FakeApi(), "check", "tests.unit.fixtures.broken_tasks", "--json")
    assert broken.exit_code == 1
    report = json.loads(broken.output)
    assert report["status"] == 1
    assert any("TS101" in line for line in report["lines"])


def test_check_of_a_module_that_cannot_be_imported_is_exit_2() -> None:
    result = run(FakeApi(), "check", "tests.unit.fixtures.no_such_module")
    assert result.exit_code == 2
    assert "cannot be imported" in result.output


def envelope(version: int, payload: object) -> Envelope:
    return Envelope(payload, f"t:{version}", "t", "t", None, 1_700_000_000_000 + version,
                    "T", version)


def test_the_fold_is_shown_event_by_event_with_the_steps_each_changed() -> None:
    folded = fold_steps([
        envelope(1, ev.TaskSubmitted("t", "T", "{}", None, None, 1, None)),
        envelope(2, ev.StepDispatched("A", 1, "q", 2, 99)),
        envelope(3, ev.StepCompleted("A", 1, "{}", 3)),
        envelope(4, ev.TaskCompleted("{}", 4)),
    ])
    assert [str(f.state.status) for f in folded] == ["Running", "Running", "Running",
                                                     "Completed"]
    assert folded[1].summary == "step A dispatched to queue q (attempt 1)"
    steps = [{n: str(s.status) for n, s in f.state.steps.items()} for f in folded]
    assert step_changes(steps[1], steps[2]) == "A: Running→Completed"
    assert step_changes({}, steps[1]) == "A: Pending→Running"
    assert step_changes(steps[2], steps[3]) == ""


def test_replay_without_a_database_url_says_how_to_set_one() -> None:
    result = CliRunner().invoke(app, ["replay", "task", "t-1"],
                                env={"TASKSAGA_DATABASE_URL": "",
                                     "TASKSAGA_CONFIG": "/nonexistent"})
    assert result.exit_code == exit_codes.USAGE
    assert "set TASKSAGA_DATABASE_URL" in result.output


@pytest.mark.parametrize("workers", ["0", "-2", "two"])
def test_a_rebuild_takes_only_a_whole_number_of_workers_from_one(
        workers: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["tasksaga-replay", "--rebuild", "--workers", workers])
    with pytest.raises(SystemExit) as exited:
        replay_main()
    assert exited.value.code == exit_codes.USAGE
    assert "give a whole number of processes, 1 or more" in capsys.readouterr().err
    result = CliRunner().invoke(app, ["replay", "rebuild", "--workers", workers])
    assert result.exit_code == exit_codes.USAGE
    assert "--workers" in result.output


@pytest.mark.parametrize(("index", "count"), [(2, 2), (-1, 3), (0, 0)])
def test_a_stream_partition_is_one_of_its_count(index: int, count: int) -> None:
    with pytest.raises(ValueError, match="want 0 <= index < count"):
        StreamPartition(index, count)


def test_an_unreachable_api_is_exit_3_with_a_hint() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    result = run(refuse, "list")
    assert result.exit_code == exit_codes.UNREACHABLE
    assert "cannot reach http://api.test/tasks" in result.output
    assert "make up" in result.output


def test_an_unknown_profile_is_a_usage_error_naming_the_known_ones(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[profiles.local]\nurl = "http://127.0.0.1:8000"\n')
    result = CliRunner().invoke(app, ["--profile", "prod", "list"],
                                env={"TASKSAGA_CONFIG": str(config)})
    assert result.exit_code == exit_codes.USAGE
    assert "profile 'prod' is not in" in result.output and "local" in result.output


def test_check_takes_a_file_as_the_module_it_is(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert importable("tasksaga_examples.zip_archive", tmp_path) == (
        "tasksaga_examples.zip_archive", None)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "tasks.py").write_text("")
    assert importable("pkg/tasks.py", tmp_path) == ("pkg.tasks", None)
    elsewhere = tmp_path / "pkg"
    assert importable(str(elsewhere / "tasks.py"), tmp_path / "other") == (
        "tasks", elsewhere.resolve())
    (tmp_path / "my_tasks.py").write_text(
        "from tasksaga_examples.zip_archive import create_zip  # noqa: F401\n")
    monkeypatch.chdir(tmp_path)
    result = run(FakeApi(), "check", "my_tasks.py")
    assert "my_tasks:CreateZip: ok (3 steps)" in result.output, result.output
    assert result.exit_code == 0
