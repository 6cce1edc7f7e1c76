"""Identity on every route: no token or a bad one is 401 naming the problem; API keys of
service accounts authenticate until revoked; the demo's local tokens lack the issuer required here.

Runs the four services as processes (one system for this folder). Each test prints its figure.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from typing import Any

import httpx
import jwt

from localrun import local_token
from tests.e2e.api_security.secure_api import (
    ISSUER,
    PUBLIC,
    Secure,
    api_operations,
    fill_path,
    new_tenant,
)


def test_every_route_but_the_health_probes_needs_a_token(secure: Secure) -> None:
    spec = secure.openapi()
    checked = 0
    for method, path in api_operations(spec):
        reply = httpx.request(method, secure.url + fill_path(path, str(uuid.uuid4())), timeout=10)
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


def test_api_keys_authenticate_service_accounts(secure: Secure) -> None:
    from psycopg_pool import ConnectionPool

    from tasksaga.api.access_store import ApiKeyStore

    tenant = new_tenant()
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
    token = local_token(tenant=new_tenant(), secret=secure.secret)
    reply = httpx.get(f"{secure.url}/whoami", headers={"Authorization": f"Bearer {token}"},
                      timeout=10)
    # The module's API requires an issuer; tokens without one are refused with the reason.
    assert reply.status_code == 401 and "iss" in reply.json()["detail"]
    assert os.environ.get("TASKSAGA_INSECURE_DEV") is None
