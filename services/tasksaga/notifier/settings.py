"""The notifier's settings: the common ones plus webhook signing, timeouts, retries, bounds.

The callback URL allowlist is common (``TASKSAGA_URL_ALLOWLIST``, ``CommonSettings``): the API
vets URLs at submit time with the same guard.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, ValidationError, field_validator

from tasksaga.adapters.url_guard import parse_allowlist
from tasksaga.config import CommonSettings
from tasksaga.core.retry import RetryPolicy
from tasksaga.notifier.rules import webhook_retry_policy

MIN_SECRET_LENGTH = 16


class NotifierSettings(CommonSettings):
    # SecretStr: the secret never shows in a repr or a logged settings dump.
    webhook_secret: SecretStr = Field(
        description="HMAC-SHA256 key for X-Tasksaga-Signature; at least 16 characters"
    )
    webhook_max_attempts: int = Field(default=8, ge=1, description="attempts per delivery")
    webhook_timeout_s: float = Field(
        default=10.0, gt=0,
        description="deadline of one POST as a whole: connect, TLS, body, the answer's status",
    )
    webhook_backoff_base_s: float = Field(default=1.0, ge=0)
    webhook_backoff_cap_s: float = Field(default=60.0, ge=0)
    webhook_senders: int = Field(
        default=16, ge=1, description="deliveries in flight at once, all receivers together"
    )
    webhook_per_receiver: int = Field(
        default=4, ge=1, description="deliveries in flight at once to one receiver host"
    )
    webhook_per_tenant: int = Field(
        default=8, ge=1, description="deliveries in flight at once for one tenant"
    )
    # The broker holds the notifier's fetches this long to gather task events (it acts on few
    # of them): with fetches answered at the first record, every event cost a response. A
    # callback waits at most this much longer; 0 answers at the first record.
    notifier_fetch_wait_ms: int = Field(default=50, ge=0, le=500)

    @field_validator("webhook_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"TASKSAGA_WEBHOOK_SECRET must be at least {MIN_SECRET_LENGTH} characters: "
                "receivers trust a webhook because only they and tasksaga know it"
            )
        return value

    @field_validator("url_allowlist")
    @classmethod
    def _valid_allowlist(cls, value: list[str]) -> list[str]:
        parse_allowlist(value)  # a bad entry stops the start with its name, not at send time
        return value

    def retry_policy(self) -> RetryPolicy:
        return webhook_retry_policy(
            max_attempts=self.webhook_max_attempts,
            base_ms=round(self.webhook_backoff_base_s * 1000),
            cap_ms=round(self.webhook_backoff_cap_s * 1000),
        )


def load_settings() -> NotifierSettings:
    """Settings from the environment, or SystemExit with a message naming each bad variable."""
    try:
        return NotifierSettings()
    except ValidationError as error:
        problems = []
        for item in error.errors():
            variable = "TASKSAGA_" + "_".join(str(part) for part in item["loc"]).upper()
            message = item["msg"].removeprefix("Value error, ")
            if item["type"] == "missing":
                message = "is required but not set"
            problems.append(
                f"  {message}" if message.startswith(variable) else f"  {variable}: {message}"
            )
        raise SystemExit("tasksaga-notifier: invalid settings\n" + "\n".join(problems)) from None
