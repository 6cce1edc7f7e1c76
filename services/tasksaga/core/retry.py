"""Retry rules: how long to wait before the next attempt, and whether to retry at all.

Pure: the caller passes the attempt number and a random fraction in [0, 1) for jitter, so
tests can pin both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Backoff(StrEnum):
    CONSTANT = "constant"
    LINEAR = "linear"
    EXPONENTIAL = "exponential"


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed step (or compensation) is retried.

    ``max_retries`` counts retries, not attempts: 2 means up to 3 attempts in all.
    ``retry_on`` empty means every error type is retried except those in ``never_retry_on``.
    """

    max_retries: int = 0
    backoff: Backoff = Backoff.EXPONENTIAL
    delay_ms: int = 1000
    max_delay_ms: int = 60_000
    jitter: float = 0.0
    retry_on: tuple[str, ...] = field(default=())
    never_retry_on: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.delay_ms < 0 or self.max_delay_ms < 0:
            raise ValueError("delay_ms and max_delay_ms must be >= 0")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter is a fraction of the delay in [0, 1], got {self.jitter}")

    def allows_retry(self, failed_attempt: int, error_type: str) -> bool:
        """True when the attempt that just failed may be followed by another one."""
        if failed_attempt > self.max_retries:
            return False
        if error_type in self.never_retry_on:
            return False
        return not self.retry_on or error_type in self.retry_on

    def delay_before(self, next_attempt: int, random_fraction: float) -> int:
        """Milliseconds to wait before ``next_attempt`` (2 for the first retry)."""
        retry_number = max(next_attempt - 1, 1)
        if self.backoff is Backoff.CONSTANT:
            base = self.delay_ms
        elif self.backoff is Backoff.LINEAR:
            base = self.delay_ms * retry_number
        else:
            base = self.delay_ms * 2 ** (retry_number - 1)
        capped = min(base, self.max_delay_ms)
        # Full jitter subtracted from the delay keeps the cap a true upper bound.
        return int(capped - capped * self.jitter * random_fraction)


NO_RETRY = RetryPolicy(max_retries=0)
