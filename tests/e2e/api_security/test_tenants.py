"""Authorization and tenants: a type the caller may not submit is 403, idempotency keys are
per tenant, and another tenant's task answers exactly like a missing one (also under fuzzing).

Runs the four services as processes (one system for this folder). Each test prints its figure.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.e2e.api_security.secure_api import PUBLIC, Secure, api_operations, fill_path, new_tenant


def test_a_type_the_caller_may_not_submit_is_forbidden(secure: Secure) -> None:
    with secure.client(new_tenant()) as no_role:
        reply = no_role.post("/tasks/Greet", json={"name": "x"})
    assert reply.status_code == 403
    assert "may not submit" in reply.json()["detail"]


def test_idempotency_keys_are_scoped_per_tenant(secure: Secure) -> None:
    a, b = new_tenant(), new_tenant()
    with secure.client(a, "greeter") as ca, secure.client(b, "greeter") as cb:
        first = secure.greet(ca, "same", key="k-1")
        again = secure.greet(ca, "same", key="k-1")
        other = secure.greet(cb, "same", key="k-1")
    assert first == again and first != other


def test_another_tenants_task_answers_exactly_like_a_missing_one(secure: Secure) -> None:
    """S3, every route and method: each tenant against the other's objects."""
    a, b = new_tenant(), new_tenant()
    marker_a, marker_b = f"MARKER-{uuid.uuid4().hex}", f"MARKER-{uuid.uuid4().hex}"
    spec = secure.openapi()
    with secure.client(a, "greeter", "tasksaga:operator") as ca, \
            secure.client(b, "greeter", "tasksaga:operator") as cb:
        task_a, task_b = secure.greet(ca, marker_a), secure.greet(cb, marker_b)
        secure.wait_completed(ca, task_a)
        secure.wait_completed(cb, task_b)
        checked = leaks = 0
        for caller, foreign, marker in ((cb, task_a, marker_a), (ca, task_b, marker_b)):
            for method, path in api_operations(spec):
                if path in PUBLIC:
                    continue
                missing = str(uuid.uuid4())
                theirs = caller.request(method, fill_path(path, foreign))
                absent = caller.request(method, fill_path(path, missing))
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

    a, b = new_tenant(), new_tenant()
    marker = f"MARKER-{uuid.uuid4().hex}"
    with secure.client(a, "greeter") as ca:
        task_a = secure.greet(ca, marker)
        secure.wait_completed(ca, task_a)
    token_b = secure.token(b, "greeter", "tasksaga:operator")
    schema = schemathesis.openapi.from_dict(secure.openapi())
    totals = {"requests": 0, "leaks": 0, "server_errors": 0}
    findings: list[str] = []  # what each leak or 5xx was, so a failure names its request
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
            seen = f"{case.method} {case.formatted_path} -> {reply.status_code}: {reply.text[:300]}"
            if reply.status_code >= 500:
                totals["server_errors"] += 1
                findings.append(f"5xx {seen}")
            if marker in reply.text or (task_a in reply.text and task_a not in case.formatted_path):
                totals["leaks"] += 1
                findings.append(f"leak {seen}")
            if task_a in case.formatted_path:
                assert reply.status_code in (404, 405, 413, 422, 429), reply.text[:200]

        probe()
    print(f"S3 schemathesis: {totals['requests']} requests, leaks {totals['leaks']}, "
          f"5xx {totals['server_errors']}")
    assert not findings, "\n".join(findings)
