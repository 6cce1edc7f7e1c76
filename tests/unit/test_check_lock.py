"""tasksaga-check's fingerprint lock file: a step graph changed without a new version fails."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tasksaga import check

EXAMPLES = ["tasksaga_examples.zip_archive", "tasksaga_examples.video_pipeline",
            "tasksaga_examples.order_fulfilment", "tasksaga_examples.trip_booking"]
EXAMPLES_LOCK = Path(__file__).parents[2] / "examples" / "tasksaga.lock.json"


def run_check(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
              *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["tasksaga-check", *args])
    status = check.main()
    return status, capsys.readouterr().out


def test_the_examples_match_their_committed_lock_file(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run_check(monkeypatch, capsys, *EXAMPLES, "--lock", str(EXAMPLES_LOCK))
    assert status == 0, out
    assert "TS14" not in out


def test_a_changed_graph_with_the_same_version_fails_naming_type_version_and_change(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    lock = tmp_path / "tasksaga.lock.json"
    status, out = run_check(monkeypatch, capsys, "tasksaga_examples.zip_archive",
                            "--lock", str(lock), "--update-lock")
    assert status == 0 and "recorded 1 definitions" in out
    document = json.loads(lock.read_text())
    graph = document["tasks"]["CreateZip"]["1"]["graph"]
    graph["CreateArchive"]["retry"]["max_retries"] = 99  # as if the code had changed
    document["tasks"]["CreateZip"]["1"]["fingerprint"] = "sha256:old"
    lock.write_text(json.dumps(document))
    status, out = run_check(monkeypatch, capsys, "tasksaga_examples.zip_archive",
                            "--lock", str(lock))
    assert status == 1
    assert "TS140 error: the step graph of CreateZip version 1 changed without a new version" \
        in out
    assert "step 'CreateArchive': retry {" in out and "declare version=2" in out


def test_a_definition_missing_from_the_lock_is_a_warning_and_the_default_lock_is_found(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    run_check(monkeypatch, capsys, "tasksaga_examples.zip_archive", "--update-lock")
    assert (tmp_path / "tasksaga.lock.json").exists()
    status, out = run_check(monkeypatch, capsys, "tasksaga_examples.zip_archive",
                            "tasksaga_examples.order_fulfilment")
    assert status == 0
    assert "TS141 warning: FulfilOrder version 1 is not in the lock file" in out


def test_an_unreadable_lock_file_is_an_error(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    lock = tmp_path / "lock.json"
    lock.write_text('{"tasks": []}')
    status, out = run_check(monkeypatch, capsys, "tasksaga_examples.zip_archive",
                            "--lock", str(lock))
    assert status == 1 and "TS142 error" in out and "not a tasksaga lock file" in out
