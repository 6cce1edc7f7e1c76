"""The ``tasksaga repair`` and ``tasksaga dlq`` commands: what they ask the API, what they
print, and a refusal turned into its message."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from tasksaga.cli import client as cli_client
from tasksaga.cli import dlq_commands, repair_commands
from tasksaga.cli.app import app

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """Every request the commands send; answers come from ``ANSWERS`` by method and path."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, body = ANSWERS[(request.method, request.url.path)]
        return httpx.Response(status, json=body)

    real = cli_client.api_client

    def fake(profile: Any) -> httpx.Client:
        made = real(profile)
        return httpx.Client(base_url=made.base_url, headers=made.headers,
                            transport=httpx.MockTransport(answer))

    for module in (repair_commands, dlq_commands):
        monkeypatch.setattr(module, "api_client", fake)
        monkeypatch.setattr(module, "console", Console(width=200))  # no wrapped table cells
    return seen


REPORT = {"sweep_id": "s-1", "age_s": 3.0, "swept_at": None, "swept_by": None,
          "objects": [{"bucket": "b", "key": "default/x/f", "size": 4, "reason": "no task",
                       "outcome": None}]}
ANSWERS: dict[tuple[str, str], tuple[int, Any]] = {
    ("POST", "/tasks/t-1/skip-compensation"): (202, {"status": "skip requested"}),
    ("POST", "/tasks/t-1/resolve"): (409, {"detail": "task t-1 is Running; only a task in "
                                                     "CompensationFailed or NeedsAttention"}),
    ("POST", "/orphans/reports"): (201, REPORT),
    ("GET", "/dead-letters"): (200, {"dead_letters": [{
        "id": 7, "source": {"topic": "p.task-commands", "partition": 0, "offset": 3},
        "task_id": None, "failed_at": "2026-01-01T00:00:00+00:00", "replay_count": 0,
        "reason": "missing C3 01 header"}], "next_after": 7}),
    ("POST", "/dead-letters/7/replay"): (202, {"replayed_to": "p.task-commands",
                                               "replay_count": 1}),
}
runner = CliRunner()
OPTIONS = ["--url", "http://api.test", "--token", "tok"]


def test_skip_compensation_posts_the_step_and_the_reason_with_the_token(
        api: list[httpx.Request]) -> None:
    result = runner.invoke(app, [*OPTIONS, "repair", "skip-compensation", "t-1", "--step",
                                 "Charge", "--reason", "refunded by hand"])
    assert result.exit_code == 0, result.output
    assert json.loads(api[0].content) == {"step": "Charge", "reason": "refunded by hand"}
    assert api[0].headers["Authorization"] == "Bearer tok"
    assert "skip requested" in result.output


def test_a_refused_resolve_exits_1_with_the_api_s_reason(api: list[httpx.Request]) -> None:
    result = runner.invoke(app, [*OPTIONS, "repair", "resolve", "t-1", "-r", "done"])
    assert result.exit_code == 1
    assert "409" in result.output and "only a task in" in result.output


def test_an_orphan_report_names_its_buckets_and_prints_the_sweep_command(
        api: list[httpx.Request]) -> None:
    result = runner.invoke(app, [*OPTIONS, "repair", "orphans", "report", "-b", "b1", "-b",
                                 "b2"])
    assert result.exit_code == 0, result.output
    assert api[0].url.params.get_list("bucket") == ["b1", "b2"]
    assert "default/x/f" in result.output
    assert "tasksaga repair orphans sweep s-1" in result.output


def test_dlq_list_filters_by_reason_and_prints_the_next_page(api: list[httpx.Request]) -> None:
    result = runner.invoke(app, [*OPTIONS, "dlq", "list", "--reason", "C3"],
                           )
    assert result.exit_code == 0, result.output
    assert api[0].url.params["reason"] == "C3"
    assert "p.task-commands[0]@3" in result.output
    assert "tasksaga dlq list --after 7" in result.output


def test_dlq_replay_asks_again_only_when_told(api: list[httpx.Request]) -> None:
    result = runner.invoke(app, [*OPTIONS, "dlq", "replay", "7"])
    assert result.exit_code == 0, result.output
    assert api[0].url.params["again"] == "false"
    assert "replayed to p.task-commands (replay 1)" in result.output
