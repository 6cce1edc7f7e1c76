"""Payload encryption: the key ring's format, sealing in the codec, rotation, and refusals."""

from __future__ import annotations

import base64
import dataclasses
import os
import time
from typing import Any

import pytest
from pydantic import SecretStr

from tasksaga.adapters.avro_codec import AvroCodec, DecodeError
from tasksaga.adapters.payload_crypto import (
    KeyRing,
    PayloadCipher,
    PayloadDecryptError,
    PayloadKeyError,
    context,
    payload_cipher_for,
)
from tasksaga.adapters.wire import MESSAGE_SCHEMAS, Envelope
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tests.unit.test_avro_codec import sample

MARKER = "secret-marker-7f3a"


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


K1, K2 = key(), key()
RING_1 = f"k1:{K1}"
RING_2 = f"k2:{K2},k1:{K1}"  # k2 current, k1 still opens


def codec(spec: str | None) -> AvroCodec:
    return AvroCodec(cipher=PayloadCipher(KeyRing.parse(spec) if spec else None))


def envelope(payload: Any, task_id: str = "task-1") -> Envelope:
    return Envelope(payload=payload, message_id="m", task_id=task_id, correlation_id=task_id,
                    causation_id=None, occurred_at_ms=1, task_type="T", version=1)


def carrying_marker() -> list[Any]:
    """One payload of every type with task data, each field holding the marker."""
    data = f'{{"note": "{MARKER}"}}'
    return [
        msg.SubmitTask("task-1", "T", data, None, None, 1, [msg.ApiStepResult("Up", data)]),
        ev.TaskSubmitted("task-1", "T", data, None, None, 1, None),
        msg.ExecuteStep("task-1", "T", "S", 1, "q", data, {"Up": data}, "i", 9),
        msg.CompensateStep("task-1", "T", "S", 1, "q", data, {"Up": data}, "i"),
        msg.StepSucceeded("task-1", "S", 1, data),
        ev.StepCompleted("S", 1, data, 1),
        ev.TaskCompleted(data, 1),
    ]


# -- the key ring ---------------------------------------------------------------------------


def test_the_first_key_of_the_list_is_current() -> None:
    ring = KeyRing.parse(f" k2:{K2} , k1:{K1} ")
    assert ring.current == "k2" and ring.key_ids == ("k2", "k1")


def test_url_safe_and_unpadded_keys_are_accepted() -> None:
    raw = os.urandom(32)
    KeyRing.parse("a:" + base64.urlsafe_b64encode(raw).decode().rstrip("="))


MALFORMED_KEY_LISTS = [
    ("", "is empty"),
    ("k1", "has no ':'"),
    (f"k.1:{K1}", "must be 1-32 characters"),
    ("k1:not*base64!", "not valid base64"),
    (f"k1:{base64.b64encode(os.urandom(16)).decode()}", "is 16 bytes; AES-256-GCM needs 32"),
    (f"k1:{K1},k1:{K2}", "'k1' appears twice"),
    (f"k1:{K1},k2:{K1}", "are the same key"),
]


# Named by the reason: the specs hold random keys, which would make the names differ between
# collections (pytest-xdist's workers must collect the same tests).
@pytest.mark.parametrize(("spec", "reason"), MALFORMED_KEY_LISTS,
                         ids=[reason for _, reason in MALFORMED_KEY_LISTS])
def test_a_malformed_key_list_is_refused_with_a_reason(spec: str, reason: str) -> None:
    with pytest.raises(PayloadKeyError, match=reason) as raised:
        KeyRing.parse(spec)
    assert K1 not in str(raised.value) and K2 not in str(raised.value)


@dataclasses.dataclass
class _Settings:
    payload_keys: SecretStr | None
    insecure_dev: bool = False


def test_a_service_refuses_to_start_without_keys() -> None:
    with pytest.raises(PayloadKeyError, match="TASKSAGA_PAYLOAD_KEYS is not set"):
        payload_cipher_for(_Settings(None))


def test_insecure_dev_without_keys_runs_in_plaintext_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cipher = payload_cipher_for(_Settings(None, insecure_dev=True))
    assert not cipher.enabled and cipher.seal("{}", b"") == "{}"
    assert "IN PLAINTEXT" in caplog.text


def test_keys_given_turn_encryption_on() -> None:
    assert payload_cipher_for(_Settings(SecretStr(RING_2))).current_key_id == "k2"


# -- sealing in the codec ------------------------------------------------------------------


def with_marker(value: Any) -> Any:
    """``value`` with the marker in every task data field (``*_json``, ``step_data``),
    nested records included."""
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(value):
        current = getattr(value, field.name)
        if field.name.endswith("_json") and isinstance(current, str):
            changes[field.name] = f'"{MARKER}"'
        elif field.name == "step_data":
            changes[field.name] = {"S": f'"{MARKER}"'}
        elif isinstance(current, list):
            changes[field.name] = [with_marker(v) if dataclasses.is_dataclass(v) else v
                                   for v in current]
    return dataclasses.replace(value, **changes)


ALL_PAYLOADS = [t for _, types in MESSAGE_SCHEMAS for t in types]


@pytest.mark.parametrize("payload_type", ALL_PAYLOADS, ids=lambda t: t.__name__)
def test_every_task_data_field_of_every_message_type_is_sealed(payload_type: type[Any]) -> None:
    """By field name, so a message type added later is covered too."""
    payload = with_marker(sample(payload_type))
    sealed = codec(RING_2)
    data = sealed.encode(envelope(payload))
    assert MARKER.encode() not in data
    assert sealed.decode(data) == envelope(payload)


@pytest.mark.parametrize("payload", carrying_marker(), ids=lambda p: type(p).__name__)
def test_task_data_round_trips_and_never_appears_in_the_bytes(payload: Any) -> None:
    sealed = codec(RING_2)
    data = sealed.encode(envelope(payload))
    assert MARKER.encode() not in data
    assert sealed.decode(data) == envelope(payload)
    # without encryption the marker is in the clear: what the test above guards against
    assert MARKER.encode() in codec(None).encode(envelope(payload))


def test_rotation_old_writes_still_open_and_new_writes_use_the_new_key() -> None:
    payload = ev.TaskCompleted(f'"{MARKER}"', 1)
    written_under_k1 = codec(RING_1).encode(envelope(payload))
    after_rotation = codec(RING_2)
    assert after_rotation.decode(written_under_k1).payload == payload
    new_write = after_rotation.encode(envelope(payload))
    assert b"v1.k2." in new_write and b"v1.k1." not in new_write
    assert b"v1.k1." in written_under_k1


def test_an_unknown_key_id_is_refused_by_name() -> None:
    written_under_k2 = codec(RING_2).encode(envelope(ev.TaskCompleted("{}", 1)))
    with pytest.raises(DecodeError, match=r"unknown key id 'k2' .*knows k1"):
        codec(RING_1).decode(written_under_k2)


def test_a_tampered_ciphertext_is_refused() -> None:
    sealed = codec(RING_2)
    data = bytearray(sealed.encode(envelope(ev.TaskCompleted(f'"{MARKER}"', 1))))
    start = data.index(b"v1.k2.") + len(b"v1.k2.")
    data[start + 20] = ord("A") if data[start + 20] != ord("A") else ord("B")
    with pytest.raises(DecodeError, match="failed authentication: it was modified"):
        sealed.decode(bytes(data))


def test_a_ciphertext_moved_to_another_task_or_step_is_refused() -> None:
    cipher = PayloadCipher(KeyRing.parse(RING_2))
    value = cipher.seal("{}", context("task-1", "StepCompleted", "data_json", "A"))
    for other in (context("task-2", "StepCompleted", "data_json", "A"),
                  context("task-1", "StepCompleted", "data_json", "B"),
                  context("task-1", "TaskCompleted", "response_json")):
        with pytest.raises(PayloadDecryptError, match="copied from another task"):
            cipher.open(value, other)
    sealed = codec(RING_2)
    data = sealed.encode(envelope(ev.TaskCompleted("{}", 1), task_id="task-1"))
    moved = data.replace(b"task-1", b"task-2")
    with pytest.raises(DecodeError, match="failed authentication"):
        sealed.decode(moved)


def test_sealed_values_without_keys_are_refused_not_passed_off_as_plaintext() -> None:
    data = codec(RING_2).encode(envelope(ev.TaskCompleted("{}", 1)))
    with pytest.raises(DecodeError, match="sealed under key id 'k2' but this process has no"):
        codec(None).decode(data)


def test_plaintext_written_before_encryption_stays_readable() -> None:
    payload = ev.TaskSubmitted("task-1", "T", '{"a": 1}', None, None, 1, None)
    assert codec(RING_2).decode(codec(None).encode(envelope(payload))).payload == payload


def test_encryption_cost_of_the_codec_is_printed() -> None:
    """Encode+decode of a typical ExecuteStep (1 KB request, two steps' data), per message;
    the best of alternating rounds, as the machine is shared."""
    request = '{"files": [' + ",".join(f'"k{i:04}"' for i in range(120)) + "]}"
    payload = msg.ExecuteStep("task-1", "T", "S", 1, "q", request,
                              {"A": '{"x": 1}', "B": '{"y": "z"}'}, "i", 9)
    subjects = {"plain": codec(None), "aes-gcm": codec(RING_2)}
    best = {name: float("inf") for name in subjects}
    item, rounds = envelope(payload), 500
    for _ in range(7):
        for name, subject in subjects.items():
            started = time.perf_counter()
            for _ in range(rounds):
                decoded = subject.decode(subject.encode(item))
            best[name] = min(best[name], (time.perf_counter() - started) / rounds * 1e6)
            assert decoded == item
    print(f"\ncodec encode+decode per ExecuteStep ({len(request)} B request): "
          f"plain {best['plain']:.1f} us, aes-gcm {best['aes-gcm']:.1f} us, "
          f"ratio {best['aes-gcm'] / best['plain']:.2f}x")


@pytest.mark.parametrize("payload", [
    ev.FanOutExpanded("Each", 1, [f'"{MARKER}-0"', f'{{"page": "{MARKER}"}}'], 5),
    msg.ExecuteStep("task-1", "T", "Each[1]", 1, "q", "{}", {}, "i", 9, item_json=f'"{MARKER}"',
                    item_index=1),
    msg.CompensateStep("task-1", "T", "Each[1]", 1, "q", "{}", {}, "i",
                       item_json=f'"{MARKER}"', item_index=1),
], ids=lambda p: type(p).__name__)
def test_fan_out_items_are_sealed_each_on_its_own(payload: Any) -> None:
    sealed = codec(RING_2)
    data = sealed.encode(envelope(payload))
    assert MARKER.encode() not in data
    assert sealed.decode(data) == envelope(payload)
