"""Field-level encryption of task payloads (requests, step data, responses) under a key ring.

A sealed value is ASCII, so it fits every Avro string field and text column unchanged::

    v1.<key id>.<base64url(nonce | ciphertext | tag), unpadded>

AES-256-GCM with a random 96-bit nonce per value; the key id names the key that sealed it, so
new values use the ring's current key while values sealed under older keys still open
(rotation). The associated data is a *context* (task id, message type, field, step) given by
the caller: a ciphertext copied into another task, field or step fails authentication.

``TASKSAGA_PAYLOAD_KEYS`` = ``kid:base64key[,kid:base64key...]``, newest first: the first key
is current, the others only decrypt. Key ids are 1-32 of ``A-Z a-z 0-9 _ -``; each key is 32
random bytes in base64 (standard or URL-safe alphabet, padding optional).

A value that is not sealed (no ``v1.`` prefix; JSON never starts that way) is returned as is:
events written before encryption was enabled stay readable, since the append-only log can never
be rewritten. Without keys, only an explicit ``TASKSAGA_INSECURE_DEV`` lets a service start,
and then it stores and sends plaintext, saying so loudly.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from collections.abc import Mapping
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

ENV_VAR = "TASKSAGA_PAYLOAD_KEYS"
PREFIX = "v1."
KEY_BYTES = 32
NONCE_BYTES = 12
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_FORMAT = "kid:base64key[,kid:base64key...] (newest first)"
_KEYGEN = "python -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())'"


class PayloadKeyError(ValueError):
    """TASKSAGA_PAYLOAD_KEYS is missing or malformed (the message never shows key material)."""


class PayloadDecryptError(ValueError):
    """A sealed value cannot be opened: unknown key id, modified bytes or another context."""


def context(*parts: str) -> bytes:
    """Associated data from its parts, length-prefixed so no two part lists collide."""
    encoded = [part.encode() for part in parts]
    return b"".join(len(p).to_bytes(4, "big") + p for p in encoded)


def column_context(task_id: str, column: str, step: str = "") -> bytes:
    """Associated data of a projection cell: ``column`` is ``table.column``."""
    return context(task_id, column, step)


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


class KeyRing:
    """Keys by id; ``current`` seals, every key opens."""

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise PayloadKeyError(f"current key id {current!r} is not in the ring")
        self.current = current
        self._aead = {kid: AESGCM(key) for kid, key in keys.items()}

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._aead)

    def aead(self, key_id: str) -> AESGCM | None:
        return self._aead.get(key_id)

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        entries = [entry.strip() for entry in spec.split(",")]
        if not any(entries):
            raise PayloadKeyError(f"{ENV_VAR} is empty; expected {_FORMAT}")
        keys: dict[str, bytes] = {}
        for number, entry in enumerate(entries, start=1):
            kid, colon, encoded = entry.partition(":")
            kid = kid.strip()
            if not colon:
                raise PayloadKeyError(f"{ENV_VAR} entry {number} has no ':'; expected {_FORMAT}")
            if not _KEY_ID.fullmatch(kid):
                raise PayloadKeyError(
                    f"{ENV_VAR} entry {number}: key id {kid!r} must be 1-32 characters of "
                    "A-Z a-z 0-9 _ -")
            if kid in keys:
                raise PayloadKeyError(f"{ENV_VAR}: key id {kid!r} appears twice")
            key = _decode_key(kid, encoded.strip())
            for other, existing in keys.items():
                if existing == key:
                    raise PayloadKeyError(
                        f"{ENV_VAR}: keys {other!r} and {kid!r} are the same key; rotation "
                        "needs a new random key")
            keys[kid] = key
        return cls(keys, current=next(iter(keys)))


def _decode_key(kid: str, encoded: str) -> bytes:
    standard = encoded.replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError) as error:
        raise PayloadKeyError(f"{ENV_VAR}: key {kid!r} is not valid base64") from error
    if len(key) != KEY_BYTES:
        raise PayloadKeyError(
            f"{ENV_VAR}: key {kid!r} is {len(key)} bytes; AES-256-GCM needs {KEY_BYTES} "
            f"(generate one with: {_KEYGEN})")
    return key


class PayloadCipher:
    """Seals and opens payload strings; ``PayloadCipher(None)`` is the insecure-dev plaintext
    mode, which still refuses to pass a sealed value off as plaintext."""

    def __init__(self, ring: KeyRing | None) -> None:
        self._ring = ring

    @property
    def enabled(self) -> bool:
        return self._ring is not None

    @property
    def current_key_id(self) -> str | None:
        return None if self._ring is None else self._ring.current

    def seal(self, plaintext: str, ctx: bytes) -> str:
        if self._ring is None:
            return plaintext
        aead = self._ring.aead(self._ring.current)
        assert aead is not None
        nonce = os.urandom(NONCE_BYTES)
        sealed = aead.encrypt(nonce, plaintext.encode(), ctx)
        body = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
        return f"{PREFIX}{self._ring.current}.{body}"

    def open(self, value: str, ctx: bytes) -> str:
        if not is_sealed(value):
            return value  # written before encryption was enabled (see the module docstring)
        kid, dot, body = value[len(PREFIX):].partition(".")
        if not dot or not _KEY_ID.fullmatch(kid):
            raise PayloadDecryptError("malformed sealed payload (expected v1.<key id>.<data>)")
        if self._ring is None:
            raise PayloadDecryptError(
                f"payload is sealed under key id {kid!r} but this process has no {ENV_VAR}")
        aead = self._ring.aead(kid)
        if aead is None:
            raise PayloadDecryptError(
                f"payload is sealed under unknown key id {kid!r} (this process knows "
                f"{', '.join(self._ring.key_ids)}); add that key to {ENV_VAR}")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError) as error:
            raise PayloadDecryptError(f"sealed payload under key {kid!r} is not base64") from error
        if len(raw) < NONCE_BYTES + 16:
            raise PayloadDecryptError(f"sealed payload under key {kid!r} is truncated")
        try:
            plaintext = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], ctx)
        except InvalidTag as error:
            raise PayloadDecryptError(
                f"sealed payload under key {kid!r} failed authentication: it was modified, or "
                "copied from another task, field or step") from error
        return plaintext.decode()

    def seal_optional(self, plaintext: str | None, ctx: bytes) -> str | None:
        return None if plaintext is None else self.seal(plaintext, ctx)

    def open_optional(self, value: str | None, ctx: bytes) -> str | None:
        return None if value is None else self.open(value, ctx)


class KeySettings(Protocol):
    @property
    def payload_keys(self) -> SecretStr | None: ...

    @property
    def insecure_dev(self) -> bool: ...


def payload_cipher_for(settings: KeySettings) -> PayloadCipher:
    """The cipher a service runs with; refuses to run without keys unless insecure dev."""
    spec = settings.payload_keys.get_secret_value() if settings.payload_keys else ""
    if spec.strip():
        ring = KeyRing.parse(spec)
        log.info("payload encryption on: sealing under key %r, opening %s",
                 ring.current, ", ".join(ring.key_ids))
        return PayloadCipher(ring)
    if not settings.insecure_dev:
        raise PayloadKeyError(
            f"{ENV_VAR} is not set: requests, step data and responses must be encrypted at "
            f"rest. Set it to {_FORMAT}, each key 32 random bytes in base64 ({_KEYGEN}), or "
            "set TASKSAGA_INSECURE_DEV=true for local development only")
    log.warning(
        "!!! INSECURE DEVELOPMENT MODE: %s is not set and TASKSAGA_INSECURE_DEV is on, so task "
        "requests, step data and responses are stored in Postgres and sent on Kafka IN "
        "PLAINTEXT. Never run like this outside a developer machine. !!!", ENV_VAR)
    return PayloadCipher(None)


class _EnvKeys(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TASKSAGA_", extra="ignore")

    payload_keys: SecretStr | None = None
    insecure_dev: bool = False


def payload_cipher_from_env() -> PayloadCipher:
    """For tools without the services' settings (tasksaga-replay): the same two variables."""
    return payload_cipher_for(_EnvKeys())
