"""The API is safe to expose: identity on every route, tenants that cannot see each other,
hostile bodies refused while they stream, mass assignment refused, abuse rate-limited.

Runs the four services as processes (one system for the module). Each test prints its figure.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest

from localrun import local_token
from tests.e2e.conftest import System, free_port, running_system

MIB = 1024 * 1024
ISSUER = "tasksaga-local"
LIMITS = {
    "TASKSAGA_TASK_MODULES": "tasksaga_examples.zip_archive,tests.e2e.security_tasks",
    "TASKSAGA_AUTH_ISSUER": ISSUER,
    "TASKSAGA_API_MAX_JSON_BYTES": str(64 * 1024),
    "TASKSAGA_API_MAX_REQUEST_BYTES": str(2 * MIB),
    "TASKSAGA_API_MAX_FILE_BYTES": str(512 * 1024),
    "TASKSAGA_API_BODY_IDLE_TIMEOUT_S": "2",
    "TASKSAGA_API_BODY_TOTAL_TIMEOUT_S": "6",
    "TASKSAGA_API_RATE_LIMIT_REQUESTS": "300",
    "TASKSAGA_API_RATE_LIMIT_WINDOW_S": "60",
}
PUBLIC = {"/health/live", "/health/ready"}


@dataclass
class Secure:
    system: System

    @property
    def url(self) -> str:
        return self.system.services.api_url

    @property
    def secret(self) -> str:
        return self.system.env["TASKSAGA_AUTH_HS256_SECRET"]

    def token(self, tenant: str, *roles: str, subject: str = "user") -> str:
        from tasksaga.api.identity import mint_token

        return mint_token(self.secret, subject=subject, tenant=tenant, roles=list(roles),
                          issuer=ISSUER)

    def client(self, tenant: str, *roles: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30,
                            headers={"Authorization": f"Bearer {self.token(tenant, *roles)}"})

    def openapi(self) -> dict[str, Any]:
        with self.client("docs") as client:
            spec: dict[str, Any] = client.get("/openapi.json").raise_for_status().json()
        return spec

    def greet(self, client: httpx.Client, name: str, key: str | None = None) -> str:
        headers = {"Idempotency-Key": key} if key else {}
        reply = client.post("/tasks/Greet", json={"name": name}, headers=headers)
        assert reply.status_code == 202, reply.text
        task_id: str = reply.json()["task_id"]
        return task_id

    def wait_completed(self, client: httpx.Client, task_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            reply = client.get(f"/tasks/{task_id}")
            if reply.status_code == 200 and reply.json()["status"] == "Completed":
                document: dict[str, Any] = reply.json()
                return document
            time.sleep(0.5)
        raise AssertionError(f"task {task_id} did not complete: {reply.text}")


@pytest.fixture(scope="module")
def secure(stack_env: dict[str, str]) -> Iterator[Secure]:
    with running_system(stack_env, **LIMITS) as system:
        yield Secure(system)


def _tenant() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def _operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [(method.upper(), path) for path, item in spec["paths"].items()
            for method in item if method in ("get", "post", "put", "patch", "delete")]


def _fill(path: str, task_id: str) -> str:
    return path.replace("{task_id}", task_id).replace("{task_type}", "Greet")


# -- identity ------------------------------------------------------------------------------


def test_every_route_but_the_health_probes_needs_a_token(secure: Secure) -> None:
    spec = secure.openapi()
    checked = 0
    for method, path in _operations(spec):
        reply = httpx.request(method, secure.url + _fill(path, str(uuid.uuid4())), timeout=10)
        if path in PUBLIC:
            assert reply.status_code in (200, 503), (method, path)
            continue
        assert reply.status_code == 401, (method, path, reply.status_code)
        assert reply.headers["www-authenticate"].startswith('Bearer realm="tasksaga"')
        checked += 1
    assert httpx.get(f"{secure.url}/openapi.json", timeout=10).status_code == 401
    print(f"routes refusing anonymous callers: {checked}/{checked}")


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_bad_tokens_get_401_naming_the_problem(secure: Secure) -> None:
    now = int(time.time())
    good = {"sub": "u", "tenant": "acme", "roles": [], "aud": "tasksaga", "iss": ISSUER,
            "iat": now, "exp": now + 600}
    header, _, signature = jwt.encode(good, secure.secret, "HS256").split(".")
    tokens = {
        "expired": (jwt.encode({**good, "exp": now - 300}, secure.secret, "HS256"), "expired"),
        "wrong issuer": (jwt.encode({**good, "iss": "evil"}, secure.secret, "HS256"), "issuer"),
        "wrong audience": (jwt.encode({**good, "aud": "x"}, secure.secret, "HS256"),
                           "audience"),
        "alg none": (f"{_b64({'alg': 'none'})}.{_b64(good)}.", "algorithm"),
        "wrong key": (jwt.encode(good, "k" * 48, "HS256"), "signature"),
        "tampered": (f"{header}.{_b64({**good, 'tenant': 'other'})}.{signature}", "signature"),
    }
    refused = 0
    for name, (token, reason) in tokens.items():
        reply = httpx.get(f"{secure.url}/tasks", headers={"Authorization": f"Bearer {token}"},
                          timeout=10)
        assert reply.status_code == 401, name
        assert reason in reply.json()["detail"], (name, reply.json())
        assert reason in reply.headers["www-authenticate"], name
        refused += 1
    print(f"bad tokens refused with 401: {refused}/{len(tokens)}")


# -- authorization and tenants ---------------------------------------------------------------


def test_a_type_the_caller_may_not_submit_is_forbidden(secure: Secure) -> None:
    with secure.client(_tenant()) as no_role:
        reply = no_role.post("/tasks/Greet", json={"name": "x"})
    assert reply.status_code == 403
    assert "may not submit" in reply.json()["detail"]


def test_idempotency_keys_are_scoped_per_tenant(secure: Secure) -> None:
    a, b = _tenant(), _tenant()
    with secure.client(a, "greeter") as ca, secure.client(b, "greeter") as cb:
        first = secure.greet(ca, "same", key="k-1")
        again = secure.greet(ca, "same", key="k-1")
        other = secure.greet(cb, "same", key="k-1")
    assert first == again and first != other


def test_another_tenants_task_answers_exactly_like_a_missing_one(secure: Secure) -> None:
    """S3, every route and method: each tenant against the other's objects."""
    a, b = _tenant(), _tenant()
    marker_a, marker_b = f"MARKER-{uuid.uuid4().hex}", f"MARKER-{uuid.uuid4().hex}"
    spec = secure.openapi()
    with secure.client(a, "greeter", "tasksaga:operator") as ca, \
            secure.client(b, "greeter", "tasksaga:operator") as cb:
        task_a, task_b = secure.greet(ca, marker_a), secure.greet(cb, marker_b)
        secure.wait_completed(ca, task_a)
        secure.wait_completed(cb, task_b)
        checked = leaks = 0
        for caller, foreign, marker in ((cb, task_a, marker_a), (ca, task_b, marker_b)):
            for method, path in _operations(spec):
                if path in PUBLIC:
                    continue
                missing = str(uuid.uuid4())
                theirs = caller.request(method, _fill(path, foreign))
                absent = caller.request(method, _fill(path, missing))
                checked += 1
                if marker in theirs.text or (
                        "{task_id}" in path and (
                            theirs.status_code != absent.status_code
                            or theirs.text.replace(foreign, "X")
                            != absent.text.replace(missing, "X"))):
                    leaks += 1
                    print("LEAK", method, path, theirs.status_code, theirs.text[:200])
            listing = caller.get("/tasks", params={"limit": 1000}).text
            leaks += foreign in listing or marker in listing
    print(f"S3 cross-tenant: route x method x tenant checks {checked}, leaks {leaks}")
    assert leaks == 0


def test_schemathesis_fuzzing_across_tenants_finds_no_leak(secure: Secure) -> None:
    """S3: schemathesis generates requests for every operation of the OpenAPI document, sent
    with tenant B's token, with A's task id in place of generated ids half of the time."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    a, b = _tenant(), _tenant()
    marker = f"MARKER-{uuid.uuid4().hex}"
    with secure.client(a, "greeter") as ca:
        task_a = secure.greet(ca, marker)
        secure.wait_completed(ca, task_a)
    token_b = secure.token(b, "greeter", "tasksaga:operator")
    schema = schemathesis.openapi.from_dict(secure.openapi())
    totals = {"requests": 0, "leaks": 0, "server_errors": 0}
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid schema raises here
        if operation.path in PUBLIC:
            continue

        @settings(max_examples=12, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(), use_foreign=st.booleans())
        def probe(case: Any, use_foreign: bool) -> None:
            # Generated credentials are replaced by tenant B's own.
            case.headers = {k: v for k, v in (case.headers or {}).items()
                            if k.lower() not in ("authorization", "x-api-key")}
            if case.path_parameters and "task_id" in case.path_parameters and use_foreign:
                case.path_parameters["task_id"] = task_a
            reply = case.call(base_url=secure.url,
                              headers={"Authorization": f"Bearer {token_b}"}, timeout=15)
            totals["requests"] += 1
            totals["server_errors"] += reply.status_code >= 500
            if marker in reply.text or (task_a in reply.text and task_a not in case.formatted_path):
                totals["leaks"] += 1
            if task_a in case.formatted_path:
                assert reply.status_code in (404, 405, 413, 422, 429), reply.text[:200]

        probe()
    print(f"S3 schemathesis: {totals['requests']} requests, leaks {totals['leaks']}, "
          f"5xx {totals['server_errors']}")
    assert totals["leaks"] == 0
    assert totals["server_errors"] == 0


# -- hostile input ---------------------------------------------------------------------------


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
    with secure.client(_tenant(), "greeter") as client:
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
    with secure.client(_tenant(), "greeter") as client:
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
    token = secure.token(_tenant(), "greeter")
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

    tenant = _tenant()
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


# -- abuse -----------------------------------------------------------------------------------


def test_pages_are_capped(secure: Secure) -> None:
    with secure.client(_tenant(), "greeter") as client:
        listing = client.get("/tasks", params={"limit": 10**6}).json()
        task_id = secure.greet(client, "pages")
        secure.wait_completed(client, task_id)
        audit = client.get(f"/tasks/{task_id}/audit", params={"limit": 10**6}).json()
    print(f"S5 pages: limit=10^6 gives {listing['limit']} (tasks), {audit['limit']} (audit)")
    assert listing["limit"] == 100 and audit["limit"] == 1000


def test_search_filters_and_bulk_cancel_with_a_dry_run(secure: Secure) -> None:
    tenant = _tenant()
    with secure.client(tenant, "greeter") as client:
        greeted = secure.greet(client, "find-me", key="search-key")
        secure.wait_completed(client, greeted)
        slow = [client.post("/tasks/Slow", json={"seconds": 60}).json()["task_id"]
                for _ in range(3)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = client.get("/tasks", params={"task_type": "Slow",
                                                   "status": "Running"}).json()["tasks"]
            if len(running) == 3:
                break
            time.sleep(0.5)
        by_key = client.get("/tasks", params={"idempotency_key": "search-key"}).json()
        future = client.get("/tasks", params={"submitted_after": "2999-01-01T00:00:00Z"})
        completed = client.get("/tasks", params={"status": ["Completed"]}).json()["tasks"]
        dry = client.post("/bulk/cancel", params={"task_type": "Slow"}).json()
        still = client.get("/tasks", params={"status": "Running"}).json()["tasks"]
        done = client.post("/bulk/cancel", params={"task_type": "Slow", "dry_run": "false"})
        ended = {task_id: secure.system.wait_terminal_with(client, task_id) for task_id in slow}
    with secure.client(_tenant(), "greeter") as other:
        foreign = other.post("/bulk/cancel", params={"dry_run": "true"}).json()
    assert [t["task_id"] for t in by_key["tasks"]] == [greeted]
    assert future.json()["tasks"] == []
    assert [t["task_id"] for t in completed] == [greeted]
    assert dry == {"matched": 3, "dry_run": True} and len(still) == 3
    assert done.json()["cancel_requested"] == 3
    assert set(ended.values()) == {"Cancelled"}
    assert foreign["matched"] == 0
    print(f"search: by key 1, future 0, completed 1; bulk cancel dry run {dry['matched']}, "
          f"then {done.json()['cancel_requested']} cancelled; another tenant matched 0")


def test_a_bursting_tenant_is_rate_limited_across_replicas(secure: Secure) -> None:
    """S5: one tenant's burst gets 429 with Retry-After, counted across two API replicas
    (the counter lives in Postgres), while another tenant's requests all pass."""
    services = secure.system.services
    port = free_port()
    services.start("api#2", {"TASKSAGA_API_PORT": str(port)})
    second = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{second}/health/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    burst, calm = _tenant(), _tenant()
    burst_headers = {"Authorization": f"Bearer {secure.token(burst)}"}
    calm_headers = {"Authorization": f"Bearer {secure.token(calm)}"}
    statuses: list[int] = []
    retry_after: list[str] = []
    calm_latencies: list[float] = []
    calm_refused = 0
    with httpx.Client(timeout=30) as client:
        for index in range(400):
            base = secure.url if index % 2 else second
            reply = client.get(f"{base}/tasks", params={"limit": 1}, headers=burst_headers)
            statuses.append(reply.status_code)
            if reply.status_code == 429:
                retry_after.append(reply.headers["retry-after"])
            if index % 20 == 0:
                started = time.monotonic()
                calm_reply = client.get(f"{base}/tasks", params={"limit": 1},
                                        headers=calm_headers)
                calm_latencies.append(time.monotonic() - started)
                calm_refused += calm_reply.status_code != 200
    services.kill("api#2")
    allowed = statuses.count(200)
    calm_latencies.sort()
    p99 = calm_latencies[int(0.99 * (len(calm_latencies) - 1))]
    print(f"S5 burst over 2 replicas: {allowed} allowed of 400 (limit 300/60 s), "
          f"{statuses.count(429)} got 429 (Retry-After {retry_after[:1]} s); other tenant "
          f"refused {calm_refused}, p99 {p99 * 1000:.0f} ms")
    assert allowed == 300
    assert retry_after and all(int(v) >= 1 for v in retry_after)
    assert calm_refused == 0


def test_api_keys_authenticate_service_accounts(secure: Secure) -> None:
    from psycopg_pool import ConnectionPool

    from tasksaga.api.access_store import ApiKeyStore

    tenant = _tenant()
    with ConnectionPool(secure.system.env["TASKSAGA_DATABASE_URL"], min_size=1, max_size=1,
                        open=True) as pool:
        store = ApiKeyStore(pool)
        key = store.create(tenant, "ci-bot", ["greeter"])
        with httpx.Client(base_url=secure.url, timeout=10) as client:
            me = client.get("/whoami", headers={"X-API-Key": key})
            assert me.status_code == 200 and me.json()["tenant"] == tenant
            assert me.json()["kind"] == "service"
            store.revoke(key.split(".")[0].removeprefix("tsk_"))
            revoked = client.get("/whoami", headers={"X-API-Key": key})
        stored = pool.connection().__enter__().execute(
            "SELECT count(*) FROM api_keys WHERE secret_hash::text LIKE %s",
            (f"%{key.split('.', 1)[1]}%",)).fetchone()
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]
    assert stored is not None and stored[0] == 0


def test_local_tokens_of_the_demo_work(secure: Secure) -> None:
    token = local_token(tenant=_tenant(), secret=secure.secret)
    reply = httpx.get(f"{secure.url}/whoami", headers={"Authorization": f"Bearer {token}"},
                      timeout=10)
    # The module's API requires an issuer; tokens without one are refused with the reason.
    assert reply.status_code == 401 and "iss" in reply.json()["detail"]
    assert os.environ.get("TASKSAGA_INSECURE_DEV") is None
