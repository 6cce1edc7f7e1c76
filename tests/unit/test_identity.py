"""Bearer tokens and API keys: every bad credential is refused with a reason that says which
check failed; the settings refuse to start without a key."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from tasksaga.api.identity import (
    ApiKeyRecord,
    AuthenticationFailed,
    TokenVerifier,
    hash_secret,
    new_api_key,
    verify_api_key,
)
from tasksaga.api.settings import ApiSettings

SECRET = "s" * 40
BASE: dict[str, Any] = {"kafka_bootstrap": "k:1", "database_url": "postgresql://x",
                        "task_id_secret": "t" * 40}


def settings(**extra: Any) -> ApiSettings:
    return ApiSettings(**{**BASE, "auth_hs256_secret": SECRET, **extra})


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "alice", "tenant": "acme", "roles": ["uploader"], "aud": "tasksaga",
            "iat": now, "nbf": now, "exp": now + 600, **extra}


def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(AuthenticationFailed) as caught:
        verifier.verify(token)
    return caught.value.reason


def test_a_valid_hs256_token_gives_subject_tenant_and_roles() -> None:
    principal = TokenVerifier(settings()).verify(jwt.encode(claims(), SECRET, "HS256"))
    assert (principal.subject, principal.tenant, principal.roles) == (
        "alice", "acme", frozenset({"uploader"}))


def test_claim_names_are_configurable() -> None:
    verifier = TokenVerifier(settings(auth_claim_tenant="org", auth_claim_roles="groups"))
    token = jwt.encode(claims(org="initech", groups="a b"), SECRET, "HS256")
    principal = verifier.verify(token)
    assert principal.tenant == "initech" and principal.roles == frozenset({"a", "b"})


def test_each_bad_token_is_refused_with_its_reason() -> None:
    verifier = TokenVerifier(settings(auth_issuer="https://idp.example"))
    good = claims(iss="https://idp.example")
    cases = {
        "expired": (jwt.encode({**good, "exp": int(time.time()) - 120}, SECRET, "HS256"),
                    "expired"),
        "wrong issuer": (jwt.encode({**good, "iss": "https://evil"}, SECRET, "HS256"),
                         "issuer"),
        "wrong audience": (jwt.encode({**good, "aud": "other"}, SECRET, "HS256"), "audience"),
        "not yet valid": (jwt.encode({**good, "nbf": int(time.time()) + 600}, SECRET, "HS256"),
                          "not valid yet"),
        "wrong key": (jwt.encode(good, "x" * 40, "HS256"), "signature"),
        "no tenant": (jwt.encode({k: v for k, v in good.items() if k != "tenant"}, SECRET,
                                 "HS256"), "tenant"),
        "not a jwt": ("not-a-token", "not a JWT"),
    }
    reasons = {name: refused(verifier, token) for name, (token, _) in cases.items()}
    for name, (_, expected) in cases.items():
        assert expected in reasons[name], (name, reasons[name])
    print(f"tokens refused: {len(reasons)}/{len(cases)}")


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_alg_none_is_refused() -> None:
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims())}."
    assert "algorithm 'none'" in refused(TokenVerifier(settings()), token)


def test_a_tampered_payload_is_refused() -> None:
    header, _, signature = jwt.encode(claims(), SECRET, "HS256").split(".")
    forged = f"{header}.{_b64(claims(tenant='other', roles=['tasksaga:operator']))}.{signature}"
    assert "signature" in refused(TokenVerifier(settings()), forged)


def test_an_hs256_token_signed_with_the_public_key_is_refused(tmp_path: Path) -> None:
    # Key confusion: a verifier with only public keys must not treat the PEM as an HMAC secret.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "rsa.pem").write_bytes(pem)
    verifier = TokenVerifier(ApiSettings(**BASE, auth_public_key_files=[tmp_path / "rsa.pem"]))
    import hashlib
    import hmac

    header = _b64({"alg": "HS256", "typ": "JWT"})
    body = _b64(claims())
    mac = hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert "not accepted" in refused(verifier, forged)


def test_rs256_and_es256_tokens_verify_with_their_public_keys(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    files = []
    for name, key in (("rsa", rsa_key), ("ec", ec_key)):
        path = tmp_path / f"{name}.pem"
        path.write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        files.append(path)
    verifier = TokenVerifier(ApiSettings(**BASE, auth_public_key_files=files))
    assert verifier.verify(jwt.encode(claims(), rsa_key, "RS256")).tenant == "acme"
    assert verifier.verify(jwt.encode(claims(sub="bob"), ec_key, "ES256")).subject == "bob"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert "signature" in refused(verifier, jwt.encode(claims(), other, "RS256"))
    assert "not accepted" in refused(verifier, jwt.encode(claims(), SECRET, "HS256"))


def test_a_jwks_document_verifies_tokens_by_key_id(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1",
                                                               "alg": "ES256", "use": "sig"}]}))
    verifier = TokenVerifier(ApiSettings(**BASE, auth_jwks_file=tmp_path / "jwks.json"))
    token = jwt.encode(claims(), key, "ES256", headers={"kid": "k1"})
    assert verifier.verify(token).subject == "alice"


def test_api_keys_are_checked_against_their_hash_and_revocation() -> None:
    key_id, key, secret_hash = new_api_key()
    assert key.split(".", 1)[1] not in secret_hash.hex()  # never stored in plain text
    records = {key_id: ApiKeyRecord(key_id, secret_hash, "acme", "ci-bot", ("uploader",),
                                    False)}
    principal = verify_api_key(key, records.get)
    assert (principal.tenant, principal.kind) == ("acme", "service")
    with pytest.raises(AuthenticationFailed, match="not valid"):
        verify_api_key(key[:-2] + "xx", records.get)
    with pytest.raises(AuthenticationFailed, match="not valid"):
        verify_api_key(f"tsk_unknown.{key.split('.', 1)[1]}", records.get)
    records[key_id] = ApiKeyRecord(key_id, hash_secret(key.split(".", 1)[1]), "acme", "ci-bot",
                                   (), True)
    with pytest.raises(AuthenticationFailed, match="revoked"):
        verify_api_key(key, records.get)


def test_settings_refuse_to_start_without_a_token_key() -> None:
    with pytest.raises(ValidationError, match="TASKSAGA_AUTH_HS256_SECRET"):
        ApiSettings(**BASE)
    with pytest.raises(ValidationError, match="TASKSAGA_TASK_ID_SECRET"):
        ApiSettings(kafka_bootstrap="k:1", database_url="postgresql://x",
                    auth_hs256_secret=SECRET)
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        ApiSettings(**BASE, auth_hs256_secret="short")
    assert ApiSettings(kafka_bootstrap="k:1", database_url="postgresql://x",
                       insecure_dev=True).insecure_dev
