"""Live progress on the real stack: SSE and WebSocket streams of a task, from submit to its
terminal event, resumed mid-way, authorized like its status (issue 10, item 3)."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from localrun import local_token
from tests.e2e.conftest import System, running_system

LIVE_ENV = {
    "TASKSAGA_TASK_MODULES": "tasksaga_examples.zip_archive,tests.e2e.live_tasks",
    "TASKSAGA_API_LIVE_KEEPALIVE_S": "0.3",
}


@pytest.fixture(scope="module")
def live(stack_env: dict[str, str]) -> Iterator[System]:
    with running_system(stack_env, **LIVE_ENV) as system:
        yield system


@dataclass
class Frame:
    event: str
    data: dict[str, Any]
    id: str | None = None


@dataclass
class Stream:
    frames: list[Frame] = field(default_factory=list)
    comments: int = 0

    def events(self) -> list[dict[str, Any]]:
        return [f.data for f in self.frames if f.event == "event"]

    def versions(self) -> list[int]:
        return [e["version"] for e in self.events()]


def read_sse(client: httpx.Client, url: str, headers: dict[str, str] | None = None,
             stop_after_events: int | None = None) -> Stream:
    """Follow an SSE stream until the server ends it (or ``stop_after_events`` events)."""
    stream = Stream()
    with client.stream("GET", url, headers=headers, timeout=90) as reply:
        assert reply.status_code == 200, reply.read()
        assert reply.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in reply.iter_lines():
            if line.startswith(":"):
                stream.comments += 1
            elif line:
                name, _, value = line.partition(": ")
                fields[name] = value
            elif "data" in fields:
                stream.frames.append(Frame(fields.get("event", "message"),
                                           json.loads(fields["data"]), fields.get("id")))
                fields = {}
                if (stop_after_events is not None
                        and len(stream.events()) >= stop_after_events):
                    break
    return stream


def submit_ticker(system: System, listen: str = "sse", ticks: int = 4,
                  interval_s: float = 0.5) -> dict[str, Any]:
    reply = system.client.post(f"/tasks/Ticker?listen={listen}",
                               json={"ticks": ticks, "interval_s": interval_s})
    assert reply.status_code == 202, reply.text
    body: dict[str, Any] = reply.json()
    return body


def audit_of(system: System, task_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = system.client.get(f"/tasks/{task_id}/audit").json()[
        "entries"]
    return entries


def wait_audited(system: System, task_id: str, version: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        entries = audit_of(system, task_id)
        if entries and entries[-1]["version"] >= version:
            return
        time.sleep(0.2)
    raise AssertionError(f"audit of {task_id} never reached version {version}")


def test_sse_follows_a_task_from_submit_to_its_terminal_event_with_progress(
        live: System) -> None:
    accepted = submit_ticker(live)
    assert accepted["listen"] == "sse"
    task_id = accepted["task_id"]
    assert accepted["listen_url"] == accepted["events_url"] == f"/tasks/{task_id}/events"
    stream = read_sse(live.client, accepted["listen_url"])
    events = stream.events()
    assert stream.versions() == list(range(1, len(events) + 1))
    assert events[0]["event_type"] == "TaskSubmitted"
    assert events[-1]["event_type"] == "TaskCompleted" and events[-1]["terminal"] is True
    assert [f.id for f in stream.frames if f.event == "event"] == [
        str(v) for v in stream.versions()]
    assert stream.frames[-1].event == "end"
    assert stream.frames[-1].data == {"type": "end", "task_id": accepted["task_id"],
                                      "status": "Completed", "version": len(events)}
    progress = [f.data for f in stream.frames if f.event == "progress"]
    assert [p["progress"] for p in progress if p["step"] == "Count"][-1] == 1.0
    assert all(f.id is None for f in stream.frames if f.event == "progress")
    assert stream.comments >= 1  # keep-alives while the step sleeps
    # The same events as the audit trail, which the projector derives from the log.
    wait_audited(live, accepted["task_id"], len(events))
    assert [(e["version"], e["event_type"]) for e in audit_of(live, accepted["task_id"])] == [
        (e["version"], e["event_type"]) for e in events]


def test_last_event_id_resumes_mid_way_with_exactly_the_remaining_events(
        live: System) -> None:
    accepted = submit_ticker(live, ticks=6, interval_s=0.5)
    first = read_sse(live.client, accepted["events_url"], stop_after_events=3)
    assert first.versions() == [1, 2, 3]
    rest = read_sse(live.client, accepted["events_url"], headers={"Last-Event-ID": "3"})
    assert rest.versions()[0] == 4
    assert rest.frames[-1].event == "end"
    whole = read_sse(live.client, accepted["events_url"])  # replayed from the log
    assert first.events() + rest.events() == whole.events()
    # Resuming at the terminal event: 204, which tells an EventSource to stop.
    last = whole.versions()[-1]
    ended = live.client.get(accepted["events_url"], headers={"Last-Event-ID": str(last)})
    assert ended.status_code == 204
    bad = live.client.get(accepted["events_url"], headers={"Last-Event-ID": "x"})
    assert bad.status_code == 422 and "Last-Event-ID" in bad.json()["detail"]
    ahead = live.client.get(accepted["events_url"], headers={"Last-Event-ID": str(last + 5)})
    assert ahead.status_code == 422 and "not in this task's log" in ahead.json()["detail"]


def test_the_websocket_carries_the_same_messages(live: System) -> None:
    accepted = submit_ticker(live, listen="websocket")
    assert accepted["listen_url"] == accepted["ws_url"]
    url = live.services.api_url.replace("http://", "ws://") + accepted["ws_url"]
    received: list[dict[str, Any]] = []
    auth = live.client.headers["Authorization"]
    with connect(url, additional_headers={"Authorization": auth}) as socket:
        for text in socket:
            received.append(json.loads(text))
        assert socket.close_code == 1000
    replay = read_sse(live.client, accepted["events_url"])
    assert [m for m in received if m["type"] == "event"] == replay.events()
    assert received[-1]["type"] == "end" and received[-1]["status"] == "Completed"
    assert any(m["type"] == "progress" for m in received)
    # Resuming a WebSocket: after_version.
    with connect(url + "?after_version=2", additional_headers={"Authorization": auth}) as sock:
        resumed = [json.loads(text) for text in sock]
    assert [m["version"] for m in resumed if m["type"] == "event"] == replay.versions()[2:]


def test_another_tenant_can_watch_nothing_and_a_ticket_stands_for_its_caller(
        live: System) -> None:
    accepted = submit_ticker(live, ticks=1, interval_s=0.1)
    task_id = accepted["task_id"]
    live.wait_terminal(task_id)
    other = local_token(tenant="other", subject="mallory", lifetime_s=600,
                        secret=live.env["TASKSAGA_AUTH_HS256_SECRET"])
    headers = {"Authorization": f"Bearer {other}"}
    with httpx.Client(base_url=live.services.api_url, headers=headers, timeout=30) as mallory:
        status = mallory.get(f"/tasks/{task_id}")
        stream = mallory.get(f"/tasks/{task_id}/events")
        ticket = mallory.post(f"/tasks/{task_id}/stream-ticket")
    assert status.status_code == stream.status_code == ticket.status_code == 404
    assert stream.json() == status.json()
    url = live.services.api_url.replace("http://", "ws://") + accepted["ws_url"]
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers=headers).close()
    assert refused.value.response.status_code == 404
    # No credentials at all: 401, for the stream as for the status.
    anonymous = httpx.get(live.services.api_url + accepted["events_url"])
    assert anonymous.status_code == 401
    # A browser's way: a short-lived ticket from an authenticated call, no header after.
    issued = live.client.post(f"/tasks/{task_id}/stream-ticket").json()
    with httpx.Client(base_url=live.services.api_url, timeout=30) as browser:
        stream_of = read_sse(browser, issued["events_url"])
        assert stream_of.frames[-1].event == "end"
        with connect(live.services.api_url.replace("http://", "ws://") + issued["ws_url"]
                     ) as sock:
            assert json.loads(list(sock)[-1])["type"] == "end"
        forged = browser.get(f"/tasks/{task_id}/events?ticket={issued['ticket']}x")
        assert forged.status_code == 401
        elsewhere = browser.get(f"/tasks/{accepted['task_id']}x/events?ticket="
                                f"{issued['ticket']}")
        assert elsewhere.status_code == 401 and "another task" in elsewhere.json()["detail"]


def test_submit_refuses_an_unknown_listening_strategy_and_a_webhook_without_url(
        live: System) -> None:
    bogus = live.client.post("/tasks/Ticker?listen=carrier-pigeon", json={})
    assert bogus.status_code == 422
    assert "listen" in bogus.json()["detail"] and "'sse'" in bogus.json()["detail"]
    hookless = live.client.post("/tasks/Ticker?listen=webhook", json={})
    assert hookless.status_code == 422
    assert "listen=webhook needs a callback_url" in hookless.json()["detail"]
    polling = submit_ticker(live, listen="polling", ticks=1, interval_s=0.1)
    assert polling["listen_url"] == polling["status_url"]


def test_many_watchers_of_one_task_each_get_every_event(live: System) -> None:
    accepted = submit_ticker(live, ticks=3, interval_s=0.4)
    results: list[Stream] = []

    def watch() -> None:
        results.append(read_sse(live.client, accepted["events_url"]))

    threads = [threading.Thread(target=watch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert len(results) == 8
    assert all(r.versions() == results[0].versions() for r in results)
    assert results[0].events()[-1]["event_type"] == "TaskCompleted"


def test_a_stopping_api_ends_its_streams_and_they_resume_on_the_next_process(
        live: System) -> None:
    """SIGTERM must not wait for open streams (a task may run for hours): each gets a
    ``dropped`` message, and Last-Event-ID resumes it on the next API process."""
    accepted = submit_ticker(live, ticks=200, interval_s=0.3)  # a minute: longer than the
    # 30 s the harness waits for the API to exit
    first: list[Stream] = []
    reader = threading.Thread(target=lambda: first.append(
        read_sse(live.client, accepted["events_url"])))
    reader.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = live.status(accepted["task_id"])
        if status and status["version"] >= 2:
            break
        time.sleep(0.2)
    time.sleep(1.0)  # the stream has replayed what the status shows
    live.services.kill("api", signal.SIGTERM)  # raises if the API has not exited in 30 s
    reader.join(30)
    assert first and first[0].frames[-1].event == "dropped"
    assert "stopping" in first[0].frames[-1].data["reason"]
    last_seen = first[0].versions()[-1]
    assert first[0].frames[-1].data["resume_after"] == last_seen
    live.services.start("api")
    live.services.wait_until_ready()
    assert live.client.post(f"/tasks/{accepted['task_id']}/cancel").status_code == 202
    rest = read_sse(live.client, accepted["events_url"],
                    headers={"Last-Event-ID": str(last_seen)})
    assert rest.frames[-1].event == "end" and rest.frames[-1].data["status"] == "Cancelled"
    whole = read_sse(live.client, accepted["events_url"])
    assert first[0].events() + rest.events() == whole.events()
