"""Who is calling: bearer JWTs verified with PyJWT, or service-account API keys.

Tokens: HS256 with a shared secret (local use), RS256/ES256 with PEM public keys or a JWKS
document (production). Issuer, audience, expiry and not-before are checked with a small
leeway; ``alg=none`` and any algorithm outside the configured keys are refused. Every refusal
says which check failed, so a caller can fix its token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import PyJWKClient, PyJWKSet

from tasksaga.api.settings import ApiSettings
from tasksaga.core.authorization import OPERATOR_ROLE, Principal

API_KEY_PREFIX = "tsk_"
_ASYMMETRIC = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256")


class AuthenticationFailed(Exception):
    """401: ``reason`` tells the caller what is wrong with its credentials."""

    def __init__(self, reason: str, error: str = "invalid_token") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    secret_hash: bytes
    tenant: str
    subject: str
    roles: tuple[str, ...]
    revoked: bool


ApiKeyLookup = Callable[[str], ApiKeyRecord | None]


def new_api_key() -> tuple[str, str, bytes]:
    """(key id, the key to hand out once, the hash to store)."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, f"{API_KEY_PREFIX}{key_id}.{secret}", hash_secret(secret)


def hash_secret(secret: str) -> bytes:
    # The secret is 256 random bits: a fast hash is enough (nothing to brute-force).
    return hashlib.sha256(secret.encode()).digest()


class TokenVerifier:
    def __init__(self, settings: ApiSettings) -> None:
        self._settings = settings
        self._secret = (settings.auth_hs256_secret.get_secret_value()
                        if settings.auth_hs256_secret else None)
        self._public_keys = [path.read_text() for path in settings.auth_public_key_files]
        self._jwks_set = (PyJWKSet.from_json(settings.auth_jwks_file.read_text())
                          if settings.auth_jwks_file else None)
        self._jwks_client = (PyJWKClient(settings.auth_jwks_url, cache_keys=True, timeout=5)
                             if settings.auth_jwks_url else None)

    @property
    def configured(self) -> bool:
        return bool(self._secret or self._public_keys or self._jwks_set or self._jwks_client)

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as error:
            raise AuthenticationFailed(f"the bearer token is not a JWT: {error}") from error
        algorithm = str(header.get("alg", ""))
        claims = self._decode(token, algorithm, header.get("kid"))
        return self._principal(claims)

    def _decode(self, token: str, algorithm: str, kid: object) -> dict[str, Any]:
        if algorithm == "HS256" and self._secret:
            keys: list[Any] = [self._secret]
        elif algorithm in _ASYMMETRIC:
            keys = self._asymmetric_keys(token, kid)
        else:
            raise AuthenticationFailed(
                f"token algorithm {algorithm or 'none'!r} is not accepted; accepted: "
                f"{', '.join(self.algorithms) or 'none configured'}")
        settings = self._settings
        last: Exception | None = None
        for key in keys:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token, key, algorithms=[algorithm], audience=settings.auth_audience,
                    issuer=settings.auth_issuer, leeway=settings.auth_leeway_s,
                    options={"require": ["exp", settings.auth_claim_subject]},
                )
                return claims
            except (jwt.InvalidSignatureError, jwt.InvalidKeyError) as error:
                last = error  # another key (or a key of another type) may verify it
            except jwt.ExpiredSignatureError as error:
                raise AuthenticationFailed("the token has expired; get a new one") from error
            except jwt.ImmatureSignatureError as error:
                raise AuthenticationFailed("the token is not valid yet (nbf/iat)") from error
            except jwt.InvalidAudienceError as error:
                raise AuthenticationFailed(
                    f"the token's audience is wrong; expected {settings.auth_audience!r}"
                ) from error
            except jwt.InvalidIssuerError as error:
                raise AuthenticationFailed(
                    f"the token's issuer is wrong; expected {settings.auth_issuer!r}") from error
            except jwt.MissingRequiredClaimError as error:
                raise AuthenticationFailed(f"the token lacks a claim: {error}") from error
            except jwt.InvalidTokenError as error:
                raise AuthenticationFailed(f"the token is invalid: {error}") from error
        raise AuthenticationFailed("the token's signature does not verify with any "
                                   "configured key") from last

    def _asymmetric_keys(self, token: str, kid: object) -> list[Any]:
        keys: list[Any] = list(self._public_keys)
        if self._jwks_set is not None:
            keys += [k.key for k in self._jwks_set.keys if kid is None or k.key_id == kid]
        if self._jwks_client is not None:
            try:
                keys.append(self._jwks_client.get_signing_key_from_jwt(token).key)
            except jwt.PyJWKClientError as error:
                if not keys:
                    raise AuthenticationFailed(f"no JWKS key for the token: {error}") from error
        if not keys:
            raise AuthenticationFailed("asymmetric tokens are not accepted here: no public key "
                                       "or JWKS is configured")
        return keys

    @property
    def algorithms(self) -> list[str]:
        found = ["HS256"] if self._secret else []
        if self._public_keys or self._jwks_set or self._jwks_client:
            found += ["RS256", "ES256"]
        return found

    def _principal(self, claims: dict[str, Any]) -> Principal:
        s = self._settings
        tenant = claims.get(s.auth_claim_tenant)
        if not isinstance(tenant, str) or not tenant:
            raise AuthenticationFailed(f"the token has no {s.auth_claim_tenant!r} claim naming "
                                       "the caller's tenant")
        roles = claims.get(s.auth_claim_roles, [])
        if isinstance(roles, str):
            roles = roles.split()
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise AuthenticationFailed(f"the token's {s.auth_claim_roles!r} claim must be a "
                                       "list of role names")
        return Principal(subject=str(claims[s.auth_claim_subject]), tenant=tenant,
                         roles=frozenset(roles), kind="user")


def verify_api_key(presented: str, lookup: ApiKeyLookup) -> Principal:
    if not presented.startswith(API_KEY_PREFIX) or "." not in presented:
        raise AuthenticationFailed("an API key looks like tsk_<id>.<secret>")
    key_id, _, secret = presented[len(API_KEY_PREFIX):].partition(".")
    record = lookup(key_id)
    # Compare a hash even for an unknown id, so timing tells nothing about which ids exist.
    expected = record.secret_hash if record else hashlib.sha256(b"-").digest()
    if not hmac.compare_digest(expected, hash_secret(secret)) or record is None:
        raise AuthenticationFailed("the API key is not valid")
    if record.revoked:
        raise AuthenticationFailed("the API key was revoked")
    return Principal(subject=record.subject, tenant=record.tenant,
                     roles=frozenset(record.roles), kind="service")


#: The caller in development mode without keys (TASKSAGA_INSECURE_DEV, no token keys).
DEVELOPMENT_PRINCIPAL = Principal(subject="dev", tenant="default",
                                  roles=frozenset({OPERATOR_ROLE}), kind="user")


def mint_token(secret: str, subject: str, tenant: str, roles: list[str],
               audience: str = "tasksaga", lifetime_s: int = 3600, now_s: int | None = None,
               issuer: str | None = None) -> str:
    """An HS256 token for local use (make demo, tests, `tasksaga-token`)."""
    import time

    issued = int(time.time()) if now_s is None else now_s
    claims: dict[str, Any] = {"sub": subject, "tenant": tenant, "roles": roles,
                              "aud": audience, "iat": issued, "nbf": issued,
                              "exp": issued + lifetime_s}
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")

