"""``tasksaga list|show|audit|cancel|retry|signal`` against a fake API."""

from __future__ import annotations

import json

import httpx

from tasksaga.cli import exit_codes
from tests.unit.cli_fakes import TASK, FakeApi, Handler, run, status_document


def task_row(n: int) -> dict[str, object]:
    return {"task_id": f"t-{n}", "task_type": "CreateZip", "status": "Completed",
            "version": 7, "submitted_at": f"2026-12-02T06:00:{n:02d}+00:00",
            "updated_at": f"2026-12-02T06:01:{n:02d}+00:00", "idempotency_key": None}


def paged_tasks(total: int) -> Handler:
    rows = [task_row(n) for n in range(total, 0, -1)]

    def handler(request: httpx.Request) -> httpx.Response:
        limit = int(request.url.params["limit"])
        start = int(request.url.params.get("before", "0"))
        page = rows[start:start + limit]
        cursor = str(start + limit) if len(page) == limit else None
        return httpx.Response(200, json={"tasks": page, "limit": limit, "next_cursor": cursor})

    return handler


def test_list_follows_the_cursor_and_passes_the_filters() -> None:
    api = FakeApi()
    api.on("GET", "/tasks", paged_tasks(5))
    result = run(api, "list", "--all", "--page-size", "2", "--type", "CreateZip",
                 "--status", "Completed", "--status", "Failed", "--json")
    assert result.exit_code == 0, result.output
    assert [t["task_id"] for t in json.loads(result.output)] == [f"t-{n}" for n in (5, 4, 3, 2, 1)]
    sent = api.sent("GET", "/tasks")
    assert [r.url.params.get("before") for r in sent] == [None, "2", "4"]
    assert sent[0].url.params.get_list("status") == ["Completed", "Failed"]
    assert sent[0].url.params["task_type"] == "CreateZip"
    # Exactly as many as the limit: nothing more to say.
    assert "more tasks match" not in run(api, "list", "--limit", "5").output


def test_list_stops_at_its_limit_and_prints_a_table() -> None:
    api = FakeApi()
    api.on("GET", "/tasks", paged_tasks(500))
    result = run(api, "list", "--limit", "3")
    assert result.exit_code == 0, result.output
    assert "3 task(s)" in result.output
    assert all(f"t-{n}" in result.output for n in (500, 499, 498))
    assert "t-497" not in result.output
    assert "more tasks match: --limit 6 or --all" in result.output
    assert len(api.sent("GET", "/tasks")) == 1


def test_show_prints_the_steps_and_json_prints_the_document() -> None:
    document = status_document("Failed", end_reason="step B failed: disk full")
    document["steps"][1] |= {"status": "Failed", "attempt": 3, "error_message": "disk full"}
    api = FakeApi()
    api.on("GET", f"/tasks/{TASK}", document)
    table = run(api, "show", TASK)
    assert table.exit_code == 0, table.output
    assert "reason: step B failed: disk full" in table.output
    assert any("B" in line and "Failed" in line and "3" in line and "disk full" in line
               for line in table.output.splitlines())
    assert json.loads(run(api, "show", TASK, "--json").output) == document


def test_show_says_which_capabilities_a_waiting_step_needs_a_worker_for() -> None:
    document = status_document()
    document["steps"][1] |= {"status": "Running", "attempt": 1,
                             "waiting_for_capabilities": ["ffmpeg", "gpu"]}
    api = FakeApi()
    api.on("GET", f"/tasks/{TASK}", document)
    table = run(api, "show", TASK)
    assert table.exit_code == 0, table.output
    assert "waiting for a worker with ffmpeg, gpu" in table.output


def test_audit_reads_every_page() -> None:
    pages = {0: ([1, 2], 2), 2: ([3], None)}

    def audit(request: httpx.Request) -> httpx.Response:
        versions, after = pages[int(request.url.params["after_version"])]
        return httpx.Response(200, json={"task_id": TASK, "limit": 2, "next_after_version": after,
                                         "entries": [{"version": v, "event_type": "E",
                                                      "step": None, "summary": f"line {v}",
                                                      "occurred_at": "2026-12-02T06:00:00"}
                                                     for v in versions]})

    api = FakeApi()
    api.on("GET", f"/tasks/{TASK}/audit", audit)
    result = run(api, "audit", TASK, "--json")
    assert [e["summary"] for e in json.loads(result.output)] == ["line 1", "line 2", "line 3"]


def test_cancel_sends_the_reason() -> None:
    api = FakeApi()
    api.on("POST", f"/tasks/{TASK}/cancel", {"task_id": TASK,
                                             "status": "cancellation requested"}, status=202)
    result = run(api, "cancel", TASK, "--reason", "wrong files")
    assert result.exit_code == 0, result.output
    assert "cancellation requested" in result.output
    assert api.sent("POST", f"/tasks/{TASK}/cancel")[0].url.params["reason"] == "wrong files"


def test_cancel_refused_is_exit_1_with_the_apis_reason() -> None:
    api = FakeApi()
    api.on("POST", f"/tasks/{TASK}/cancel", {"detail": f"task {TASK} already ended: Completed"},
           status=409)
    result = run(api, "cancel", TASK)
    assert result.exit_code == exit_codes.API_ERROR
    assert "409" in result.output and "already ended: Completed" in result.output


def test_retry_picks_the_route_from_the_status() -> None:
    for status, route in (("CompensationFailed", "retry-compensation"),
                          ("NeedsAttention", "retry-forward")):
        api = FakeApi()
        api.on("GET", f"/tasks/{TASK}", status_document(status))
        api.on("POST", f"/tasks/{TASK}/{route}", {"task_id": TASK, "status": "requested"},
               status=202)
        result = run(api, "retry", TASK)
        assert result.exit_code == 0, result.output
        assert [r.url.path for r in api.requests if r.method == "POST"] == [
            f"/tasks/{TASK}/{route}"]


def test_retry_of_a_task_that_waits_for_none_is_refused_before_any_post() -> None:
    api = FakeApi()
    api.on("GET", f"/tasks/{TASK}", status_document("Running"))
    result = run(api, "retry", TASK)
    assert result.exit_code == exit_codes.API_ERROR
    assert "is Running" in result.output
    assert not [r for r in api.requests if r.method == "POST"]


def test_retry_flag_forces_the_route_without_reading_the_status() -> None:
    api = FakeApi()
    api.on("POST", f"/tasks/{TASK}/retry-forward", {"task_id": TASK, "status": "requested"},
           status=202)
    assert run(api, "retry", TASK, "--forward").exit_code == 0
    assert [r.method for r in api.requests] == ["POST"]


def test_signal_sends_the_body_and_the_signal_id() -> None:
    api = FakeApi()
    api.on("POST", f"/tasks/{TASK}/signals/Approve",
           lambda r: httpx.Response(202, json={"task_id": TASK, "signal": "Approve",
                                               "signal_id": r.headers["Signal-Id"],
                                               "status": "signal accepted"}))
    result = run(api, "signal", TASK, "Approve", "--data", "-", "--signal-id", "s-1", "--json",
                 stdin='{"approver": "bob", "approved": true}')
    assert result.exit_code == 0, result.output
    request = api.sent("POST", f"/tasks/{TASK}/signals/Approve")[0]
    assert request.headers["Signal-Id"] == "s-1"
    assert json.loads(request.content) == {"approver": "bob", "approved": True}
    assert json.loads(result.output)["status"] == "signal accepted"


def test_a_signal_body_that_is_not_json_is_a_usage_error() -> None:
    result = run(FakeApi(), "signal", TASK, "Approve", "--data", "{approved: yes}")
    assert result.exit_code == exit_codes.USAGE
    assert "--data is not valid JSON" in result.output


def test_whoami_names_the_profile_and_the_callers_tenant_and_roles() -> None:
    api = FakeApi()
    api.on("GET", "/whoami", {"subject": "alice", "tenant": "acme", "kind": "user",
                              "roles": ["approver", "tasksaga:operator"]})
    result = run(api, "whoami")
    assert result.exit_code == 0, result.output
    assert "profile default -> http://api.test" in result.output
    assert "alice (user) of tenant acme, roles: approver, tasksaga:operator" in result.output
    assert api.sent("GET", "/whoami")[0].headers["Authorization"] == "Bearer tok"


def test_retry_watch_follows_the_retry_once_it_is_in_the_log() -> None:
    from tests.unit.cli_fakes import completed_run, sse

    # The projection shows the retry's event on the third read.
    reads = iter([("NeedsAttention", 5), ("NeedsAttention", 5), ("Running", 6)])

    def status(_request: httpx.Request) -> httpx.Response:
        now, version = next(reads, ("Completed", 7))
        return httpx.Response(200, json=status_document(now, version=version))

    api = FakeApi()
    api.on("GET", f"/tasks/{TASK}", status)
    api.on("POST", f"/tasks/{TASK}/retry-forward", {"task_id": TASK, "status": "requested"},
           status=202)
    api.on("GET", f"/tasks/{TASK}/events", lambda _r: sse(completed_run()))
    result = run(api, "retry", TASK, "--watch")
    assert result.exit_code == exit_codes.OK, result.output
    paths = [(r.method, r.url.path.rsplit("/", 1)[-1]) for r in api.requests]
    assert paths[:4] == [("GET", TASK), ("POST", "retry-forward"), ("GET", TASK),
                         ("GET", TASK)]
    assert ("GET", "events") in paths[4:]
