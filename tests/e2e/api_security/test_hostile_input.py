"""Hostile input: mass assignment and unknown fields refused without echo, callback URLs
vetted by the SSRF guard, oversized and slow bodies cut off while they stream.

Runs the four services as processes (one system for this folder). Each test prints its figure.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
import uuid
from collections.abc import Iterator

from tests.e2e.api_security.secure_api import MIB, Secure, new_tenant


def test_mass_assignment_and_unknown_fields_are_refused_without_echo(secure: Secure) -> None:
    """S4: server-set fields and undeclared fields, in JSON and in multipart, are all 422."""
    secret_value = f"SECRET-{uuid.uuid4().hex}"
    attempts = [
        {"name": "x", "tenant": "other"}, {"name": "x", "status": "Completed"},
        {"name": "x", "created_by": "admin"}, {"name": "x", "submitted_by": "admin"},
        {"name": "x", "task_id": str(uuid.uuid4())}, {"name": "x", "expres": True},
        {"name": "x", "address": {"city": "c", "zipcode": "1"}},
        {"name": {"nested": secret_value}},
    ]
    accepted = 0
    with secure.client(new_tenant(), "greeter") as client:
        for body in attempts:
            reply = client.post("/tasks/Greet", json=body)
            accepted += reply.status_code == 202
            assert reply.status_code == 422, (body, reply.text)
            assert secret_value not in reply.text
            assert "other" not in reply.text or "tenant" in reply.text
        form = client.post("/tasks/CreateZip", data={"tenant": "other"},
                           files=[("files", ("a.txt", b"a", "text/plain"))])
        accepted += form.status_code == 202
        assert form.status_code == 422 and "tenant" in form.json()["detail"]
        named = client.post("/tasks/Greet", json={"name": "x", "expres": True}).json()
        assert "'expres'" in named["detail"]
        lenient = client.post("/tasks/Lenient", json={"note": "n", "extra": 1})
        assert lenient.status_code == 202  # a definition may opt into ignoring extras
        assert client.post("/tasks/Lenient", json={"note": "n", "tenant": "x"}
                           ).status_code == 422
    print(f"S4 mass assignment: fields accepted {accepted}/{len(attempts) + 1}")


def test_callback_urls_in_the_query_and_in_the_body_pass_the_ssrf_guard(secure: Secure
                                                                       ) -> None:
    hostile = ["http://169.254.169.254/latest/meta-data", "http://127.0.0.1:8000/",
               "http://2130706433/", "http://[::ffff:10.0.0.1]/", "http://0x7f.1/"]
    refused = 0
    with secure.client(new_tenant(), "greeter") as client:
        for url in hostile:
            in_query = client.post("/tasks/Greet", params={"callback_url": url},
                                   json={"name": "x"})
            in_body = client.post("/tasks/Greet", json={"name": "x", "hook": url})
            for reply, field in ((in_query, "callback_url"), (in_body, "hook")):
                assert reply.status_code == 422, (url, reply.text)
                assert f"{field} refused" in reply.json()["detail"]
                assert url not in reply.text  # the refusal never echoes the URL
                refused += 1
    print(f"callback URLs refused at submit: {refused}/{2 * len(hostile)}")


def _raw_request(secure: Secure, head: str, body_chunks: Iterator[bytes] | None = None,
                 pause_s: float = 0.0) -> tuple[int | None, int, float]:
    """Send a request over a raw socket; (status or None if cut off, body bytes sent, secs)."""
    port = int(secure.url.rsplit(":", 1)[1])
    started = time.monotonic()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head.encode())
        sock.setblocking(False)
        reply = b""
        for chunk in body_chunks or iter(()):
            with contextlib.suppress(BlockingIOError):
                reply += sock.recv(65536)
            if reply:
                break
            try:
                sock.sendall(chunk)
                sent += len(chunk)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
            if pause_s:
                time.sleep(pause_s)
        sock.setblocking(True)
        sock.settimeout(20)
        try:
            while b"\r\n" not in reply:
                data = sock.recv(65536)
                if not data:
                    break
                reply += data
        except (ConnectionResetError, TimeoutError):
            pass
    status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else None
    return status, sent, time.monotonic() - started


def _head(secure: Secure, path: str, content_type: str, length: str | None) -> str:
    token = secure.token(new_tenant(), "greeter")
    framing = f"Content-Length: {length}" if length else "Transfer-Encoding: chunked"
    return (f"POST {path} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: {content_type}\r\n{framing}\r\n\r\n")


def _rss_peak_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_oversized_and_slow_bodies_are_cut_off_while_they_stream(secure: Secure) -> None:
    """S2: a 5 GB declared body, chunked bodies with no length (JSON and a multipart file
    above its limit), and a client sending 1 byte a second."""
    api_pid = secure.system.services.processes["api"].pid
    declared = _raw_request(secure, _head(secure, "/tasks/Greet", "application/json",
                                          str(5 * 1024**3)))
    assert declared[0] == 413 and declared[1] == 0

    def chunks(size: int, total: int) -> Iterator[bytes]:
        payload = b"x" * size
        for _ in range(total // size):
            yield f"{size:x}\r\n".encode() + payload + b"\r\n"

    chunked = _raw_request(secure, _head(secure, "/tasks/Greet", "application/json", None),
                           chunks(16 * 1024, 64 * MIB))
    assert chunked[0] == 413, chunked

    tenant = new_tenant()
    boundary = "b0undary"
    start = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
             f"filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()

    def multipart() -> Iterator[bytes]:
        yield f"{len(start):x}\r\n".encode() + start + b"\r\n"
        yield from chunks(16 * 1024, 8 * MIB)

    token = secure.token(tenant, "greeter")
    head = (f"POST /tasks/CreateZip HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n")
    file_part = _raw_request(secure, head, multipart())
    assert file_part[0] == 413, file_part

    def one_byte_a_second() -> Iterator[bytes]:
        for _ in range(30):
            yield b"{"

    slow = _raw_request(secure, _head(secure, "/tasks/Greet", "application/json", "30"),
                        one_byte_a_second(), pause_s=1.0)
    assert slow[0] in (408, None) and slow[2] < 15, slow

    from tasksaga.adapters.object_store import MinioObjectStore

    env = secure.system.env
    store = MinioObjectStore(env["TASKSAGA_S3_ENDPOINT"], env["TASKSAGA_S3_ACCESS_KEY"],
                             env["TASKSAGA_S3_SECRET_KEY"])
    orphans = list(store._client.list_objects("zip-uploads", prefix=f"{tenant}/",
                                              recursive=True))
    peak = _rss_peak_kib(api_pid)
    read_before = [int(found) for found in re.findall(
        r"refused a body over \d+ bytes after reading (\d+)",
        secure.system.services.log_tail("api", 400))]
    assert len(read_before) >= 3 and max(read_before[-3:]) <= 2 * MIB
    print(f"S2 sizes: declared 5 GB -> {declared[0]} after {declared[1]} body bytes; chunked "
          f"JSON -> {chunked[0]} after {chunked[1] / MIB:.2f} MiB sent (limit 64 KiB); "
          f"multipart file -> {file_part[0]} after {file_part[1] / MIB:.2f} MiB sent "
          f"(file limit 512 KiB); 1 byte/s -> {slow[0] or 'cut off'} after {slow[2]:.1f} s; "
          f"bytes the API read before each refusal {read_before[-3:]}; API peak RSS "
          f"{peak / 1024:.0f} MiB; orphaned uploads {len(orphans)}")
    assert orphans == []


def test_a_nul_character_in_the_url_and_an_unknown_status_are_refused_not_500(
    secure: Secure,
) -> None:
    """PostgreSQL text holds no NUL: one in a path or a filter made the driver raise (500,
    found by the S3 fuzzing). They are 400 before any route runs; a status filter takes only
    task statuses (422 naming them)."""
    with secure.client(new_tenant(), "greeter") as client:
        refused = [client.get("/tasks", params={"status": "Runn\x00ing"}),
                   client.get("/tasks", params={"idempotency_key": "k\x00"}),
                   client.get("/tasks/abc%00def"),
                   client.post("/bulk/cancel", params={"reason": "r\x00", "dry_run": "true"})]
        for reply in refused:
            assert reply.status_code == 400, (reply.request.url, reply.text)
            assert "NUL" in reply.json()["detail"]
        assert "path" in refused[2].json()["detail"]
        unknown = client.get("/tasks", params={"status": ["Running", "Done"]})
        assert unknown.status_code == 422, unknown.text
        assert "Running" in unknown.json()["detail"] and "Completed" in unknown.json()["detail"]
        assert client.get("/tasks", params={"status": ["Running", "Completed"]}
                          ).status_code == 200
    print(f"S4 NUL in the URL: {len(refused)} of {len(refused)} refused with 400")
