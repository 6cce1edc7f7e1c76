"""``tasksaga submit``: JSON requests, and multipart bodies streamed from disk."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from python_multipart import parse_form
from python_multipart.multipart import Field, File

from tasksaga.cli import exit_codes, multipart
from tests.unit.cli_fakes import TASK, FakeApi, completed_run, run, sse, status_document

ACCEPTED = {"task_id": TASK, "task_type": "CreateZip", "status_url": f"/tasks/{TASK}",
            "already_submitted": False}


def parsed(request: httpx.Request) -> tuple[list[tuple[str, str]], list[tuple[str, str, bytes]]]:
    """The form fields and files a real multipart parser finds in the request's body."""
    fields: list[tuple[str, str]] = []
    files: list[tuple[str, str, bytes]] = []

    def on_field(part: Field) -> None:
        fields.append(((part.field_name or b"").decode(), (part.value or b"").decode()))

    def on_file(part: File) -> None:
        part.file_object.seek(0)
        files.append(((part.field_name or b"").decode(), (part.file_name or b"").decode(),
                      part.file_object.read()))

    parse_form({"Content-Type": request.headers["content-type"].encode(),
                "Content-Length": request.headers["content-length"].encode()},
               io.BytesIO(request.content), on_field, on_file)
    return fields, files


def test_the_streamed_body_parses_back_to_the_fields_and_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / 'b "q".bin'
    a.write_bytes(b"alpha\r\n--not a boundary\r\n")
    b.write_bytes(bytes(range(256)) * 1000)
    boundary, segments = multipart.layout([("archive_name", "out.zip")],
                                          [("files", a), ("files", b)])
    sent: list[int] = []
    body = b"".join(multipart.stream(segments, sent.append, chunk_bytes=4096))
    assert len(body) == multipart.body_length(segments) == sum(sent)
    request = httpx.Request("POST", "http://x/", content=body, headers={
        "content-type": f"multipart/form-data; boundary={boundary}",
        "content-length": str(len(body))})
    fields, files = parsed(request)
    assert fields == [("archive_name", "out.zip")]
    assert files == [("files", "a.txt", a.read_bytes()),
                     ("files", "b %22q%22.bin", b.read_bytes())]
    assert max(sent) <= 4096 + 200  # read in chunks, never the whole file at once


def test_a_file_that_grows_during_the_upload_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"12345")
    _, segments = multipart.layout([], [("files", path)])
    path.write_bytes(b"1234567890")
    with pytest.raises(OSError, match="grew while it was uploaded"):
        b"".join(multipart.stream(segments))


def test_submit_files_sends_a_sized_multipart_body_and_prints_the_task(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.txt").write_text("world")
    api = FakeApi()
    api.on("POST", "/tasks/CreateZip", ACCEPTED, status=202)
    result = run(api, "submit", "CreateZip", "--file", f"files={tmp_path / 'a.txt'}",
                 "--file", f"files=@{tmp_path / 'b.txt'}", "--field", "archive_name=x.zip",
                 "--idempotency-key", "k-1")
    assert result.exit_code == 0, result.output
    assert f"accepted: task {TASK}" in result.output
    request = api.sent("POST", "/tasks/CreateZip")[0]
    assert request.headers["Idempotency-Key"] == "k-1"
    assert "transfer-encoding" not in request.headers
    assert int(request.headers["content-length"]) == len(request.content)
    fields, files = parsed(request)
    assert fields == [("archive_name", "x.zip")]
    assert [(name, content) for _, name, content in files] == [("a.txt", b"hello"),
                                                              ("b.txt", b"world")]


def test_submit_json_from_a_file_and_watch_exits_with_the_outcome(tmp_path: Path) -> None:
    request_file = tmp_path / "req.json"
    request_file.write_text('{"expense_id": "e-1", "amount_cents": 100}')
    api = FakeApi()
    api.on("POST", "/tasks/ExpenseApproval", ACCEPTED, status=202)
    api.on("GET", f"/tasks/{TASK}", status_document("Completed"))
    api.on("GET", f"/tasks/{TASK}/events", lambda _r: sse(completed_run()))
    result = run(api, "submit", "ExpenseApproval", "--data", f"@{request_file}", "--watch")
    assert result.exit_code == exit_codes.OK, result.output
    sent = api.sent("POST", "/tasks/ExpenseApproval")[0]
    assert json.loads(sent.content) == {"expense_id": "e-1", "amount_cents": 100}
    assert sent.headers["content-type"] == "application/json"
    assert "ended Completed" in result.output


def test_submit_refusals_are_clear() -> None:
    api = FakeApi()
    api.on("POST", "/tasks/CreateZip", {"detail": "files: field required"}, status=422)
    refused = run(api, "submit", "CreateZip")
    assert refused.exit_code == exit_codes.API_ERROR
    assert "422" in refused.output and "files: field required" in refused.output
    missing = run(api, "submit", "CreateZip", "--file", "files=/no/such/file")
    assert missing.exit_code == exit_codes.USAGE
    assert "/no/such/file is not a readable file" in missing.output
    both = run(api, "submit", "CreateZip", "--data", "{}", "--field", "a=b")
    assert both.exit_code == exit_codes.USAGE and "--data sends a JSON request" in both.output
