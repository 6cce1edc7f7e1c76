"""The dashboard's routes on the API app, with fakes behind it: its pages carry a strict
Content-Security-Policy and no task data, its timeline is authorized like GET /tasks/{id},
its files ship with the package, and its scripts never build HTML from strings."""

from __future__ import annotations

import asyncio
import re
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from tasksaga.adapters.wire import Envelope
from tasksaga.api.app import create_app
from tasksaga.api.body_limits import Limits
from tasksaga.api.dependencies import ApiDependencies
from tasksaga.api.identity import TokenVerifier, mint_token
from tasksaga.api.live.hub import LiveHub
from tasksaga.api.live.messages import LiveMessage, event_message
from tasksaga.api.live.routes import LiveService
from tasksaga.api.live.tickets import TicketSigner
from tasksaga.api.queries import TaskRow
from tasksaga.api.security import Security
from tasksaga.api.settings import ApiSettings
from tasksaga.api.ui import routes as ui
from tasksaga.core import StepContext, TaskDefinition
from tasksaga.core import events as ev
from tasksaga.core.authorization import RoleAuthorization
from tasksaga.core.registry import TaskRegistry

SECRET = "s" * 48
TASK = "task-1"
REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "services" / "tasksaga" / "api" / "ui" / "static"


class Empty(BaseModel):
    pass


definition = TaskDefinition("UiDemo", queue="ui", request=Empty, cancellable=True)


@definition.step("Only", order=1)
def only(ctx: StepContext[Empty]) -> None:
    return None


class FakeQueries:
    def __init__(self, rows: dict[str, TaskRow]) -> None:
        self.rows = rows

    def task(self, task_id: str) -> TaskRow | None:
        return self.rows.get(task_id)


class FakeLog:
    def __init__(self, messages: list[LiveMessage]) -> None:
        self.messages = messages

    async def events_from(self, task_id: str, first_version: int,
                          limit: int) -> list[LiveMessage]:
        return [m for m in self.messages
                if m.task_id == task_id and (m.version or 0) >= first_version][:limit]

    async def progress(self, task_id: str) -> list[LiveMessage]:
        return []


class FakeFeed:
    ready = True

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        pass

    def stop(self) -> None:
        pass


def envelope(version: int, payload: Any, at_ms: int) -> LiveMessage:
    return event_message(Envelope(payload=payload, message_id=f"m{version}", task_id=TASK,
                                  correlation_id=TASK, causation_id=None, occurred_at_ms=at_ms,
                                  version=version))


def bearer(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(SECRET, 'ann', tenant, [])}"}


@pytest.fixture
def client() -> Iterator[TestClient]:
    registry = TaskRegistry()
    registry.register(definition)
    now = datetime.now(UTC)
    row = TaskRow(TASK, "UiDemo", "Running", 3, "{}", None, None, now, now, tenant="acme")
    log = FakeLog([envelope(1, ev.TaskSubmitted(TASK, "UiDemo", "{}", None, None, 1000, None,
                                                tenant="acme"), 1000),
                   envelope(2, ev.StepDispatched("Only", 1, "ui", 1100, 9999), 1100),
                   envelope(3, ev.StepCompleted("Only", 1, "{}", 1900), 1900)])
    settings = ApiSettings(kafka_bootstrap="unused:9092", database_url="postgresql://unused",
                           auth_hs256_secret=SECRET, task_id_secret="t" * 48)
    unused = cast(Any, None)
    deps = ApiDependencies(
        registry=registry, queries=cast(Any, FakeQueries({TASK: row})), producer=unused,
        codec=unused, topics=unused, objects=unused,
        security=Security(TokenVerifier(settings), None, None, RoleAuthorization()),
        url_guard=unused, limits=Limits(1 << 20, 1 << 24, 1 << 23, 5, 60),
        task_id_secret=b"t" * 48,
        live=LiveService(LiveHub(), cast(Any, FakeFeed()), log, TicketSigner(b"t" * 48)))
    with TestClient(create_app(deps)) as test_client:
        yield test_client


def test_pages_and_assets_carry_a_strict_content_security_policy(client: TestClient) -> None:
    for path in ("/ui/", "/ui/tasks/abc", "/ui/static/task.js", "/ui/static/dashboard.css"):
        reply = client.get(path)
        assert reply.status_code == 200, path
        assert reply.headers["content-security-policy"] == ui.CONTENT_SECURITY_POLICY
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["referrer-policy"] == "no-referrer"
    policy = ui.CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "require-trusted-types-for 'script'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe" not in policy and "http" not in policy  # no inline code, no CDN
    assert "content-security-policy" not in client.get("/health/live").headers


def test_ui_without_a_slash_redirects_to_the_task_list(client: TestClient) -> None:
    reply = client.get("/ui", follow_redirects=False)
    assert (reply.status_code, reply.headers["location"]) == (308, "/ui/")


def test_the_task_page_holds_nothing_of_the_task_it_is_for(client: TestClient) -> None:
    reply = client.get("/ui/tasks/%3Cimg%20src%3Dx%20onerror%3Dpwned()%3E")
    assert reply.status_code == 200
    assert "pwned" not in reply.text and reply.text == client.get("/ui/tasks/other").text


def test_the_timeline_needs_a_caller(client: TestClient) -> None:
    assert client.get(f"/ui/api/tasks/{TASK}/timeline").status_code == 401


def test_another_tenants_timeline_is_the_same_404_as_a_missing_task(client: TestClient
                                                                     ) -> None:
    hidden = client.get(f"/ui/api/tasks/{TASK}/timeline", headers=bearer("other"))
    missing = client.get("/ui/api/tasks/nope/timeline", headers=bearer("other"))
    assert (hidden.status_code, missing.status_code) == (404, 404)
    assert hidden.json()["detail"] == f"no task {TASK}"
    assert missing.json()["detail"] == "no task nope"


def test_the_timeline_is_folded_from_the_tasks_event_log(client: TestClient) -> None:
    reply = client.get(f"/ui/api/tasks/{TASK}/timeline", headers=bearer("acme"))
    assert reply.status_code == 200
    body = reply.json()
    assert [lane["step"] for lane in body["lanes"]] == ["Only"]
    assert body["lanes"][0]["bars"] == [{"kind": "run", "attempt": 1, "start_ms": 1100,
                                         "end_ms": 1900, "outcome": "completed"}]
    assert (body["start_ms"], body["cancellable"], body["truncated"]) == (1000, True, False)


def test_every_dashboard_file_ships_as_package_data() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["tasksaga.api.ui"]
    files = sorted(p.relative_to(STATIC.parent).as_posix() for p in STATIC.iterdir())
    assert files and all(any(fnmatch(f, pattern) for pattern in patterns) for f in files)


def test_the_scripts_never_turn_strings_into_html() -> None:
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|"
                       r"new Function|srcdoc")
    scripts = sorted(STATIC.glob("*.js"))
    assert scripts
    for path in scripts:
        assert not sinks.search(path.read_text()), path.name
    for page in STATIC.glob("*.html"):
        text = page.read_text()
        # No inline script or style: the CSP would refuse it, and nothing loads elsewhere.
        script = "list" if page.stem == "index" else page.stem
        assert re.findall(r"<script[^>]*>", text) == [
            f'<script type="module" src="/ui/static/{script}.js">']
        assert "style=" not in text and "<style" not in text and "http" not in text
