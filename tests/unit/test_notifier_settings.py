"""The notifier refuses to start without a usable webhook secret."""

from __future__ import annotations

import pytest

from tasksaga.notifier.sender import Limits
from tasksaga.notifier.settings import NotifierSettings, load_settings

REQUIRED = {
    "TASKSAGA_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
    "TASKSAGA_DATABASE_URL": "postgresql://u:p@127.0.0.1:5432/db",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TASKSAGA_WEBHOOK_SECRET", raising=False)
    return monkeypatch


def test_defaults_and_schedule(env: pytest.MonkeyPatch) -> None:
    env.setenv("TASKSAGA_WEBHOOK_SECRET", "0123456789abcdef")
    settings = load_settings()
    assert settings.webhook_secret.get_secret_value() == "0123456789abcdef"
    assert "0123456789abcdef" not in repr(settings)
    assert (settings.webhook_max_attempts, settings.webhook_timeout_s) == (8, 10.0)
    policy = settings.retry_policy()
    assert (policy.max_retries, policy.delay_ms, policy.max_delay_ms) == (7, 1000, 60_000)


def test_missing_secret_names_the_variable(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as stopped:
        load_settings()
    assert "TASKSAGA_WEBHOOK_SECRET: is required" in str(stopped.value)


def test_short_secret_is_refused(env: pytest.MonkeyPatch) -> None:
    env.setenv("TASKSAGA_WEBHOOK_SECRET", "too-short")
    with pytest.raises(SystemExit) as stopped:
        load_settings()
    assert "TASKSAGA_WEBHOOK_SECRET must be at least 16 characters" in str(stopped.value)


def test_settings_can_be_given_directly() -> None:
    settings = NotifierSettings(
        kafka_bootstrap="k:1", database_url="postgresql://x", webhook_secret="s" * 16,
        webhook_backoff_base_s=0.05, webhook_backoff_cap_s=0.2, webhook_max_attempts=3,
    )
    assert settings.retry_policy().delay_ms == 50


def test_url_allowlist_and_send_bounds(env: pytest.MonkeyPatch) -> None:
    env.setenv("TASKSAGA_WEBHOOK_SECRET", "0123456789abcdef")
    settings = load_settings()
    assert settings.url_allowlist == []  # nothing but public receivers by default
    assert (settings.webhook_senders, settings.webhook_per_receiver,
            settings.webhook_per_tenant) == (16, 4, 8)
    env.setenv("TASKSAGA_URL_ALLOWLIST", "127.0.0.2/32, hooks.internal")
    env.setenv("TASKSAGA_WEBHOOK_PER_RECEIVER", "2")
    settings = load_settings()
    assert settings.url_allowlist == ["127.0.0.2/32", "hooks.internal"]
    assert settings.webhook_per_receiver == 2


def test_bad_allowlist_entry_stops_the_start_with_its_name(env: pytest.MonkeyPatch) -> None:
    env.setenv("TASKSAGA_WEBHOOK_SECRET", "0123456789abcdef")
    env.setenv("TASKSAGA_URL_ALLOWLIST", "127.0.0.2/32,10.0.0.0/33")
    with pytest.raises(SystemExit) as stopped:
        load_settings()
    assert "TASKSAGA_URL_ALLOWLIST: '10.0.0.0/33' is not a CIDR" in str(stopped.value)


def test_send_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="per_receiver must be >= 1"):
        Limits(per_receiver=0)


def test_the_notifier_lets_the_broker_gather_task_events_before_answering_a_fetch(
    env: pytest.MonkeyPatch,
) -> None:
    from tasksaga.notifier.main import notifier_fetch_config

    env.setenv("TASKSAGA_WEBHOOK_SECRET", "0123456789abcdef")
    assert load_settings().notifier_fetch_wait_ms == 50
    assert notifier_fetch_config(50) == {"fetch.wait.max.ms": 50, "fetch.min.bytes": 1048576}
    assert notifier_fetch_config(0) == {}  # answered at the first record, as librdkafka does
