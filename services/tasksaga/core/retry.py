"""Retry rules: how long to wait before the next attempt, and whether to retry at all.

Pure: the caller passes the attempt number and a random fraction in [0, 1) for jitter, so
tests can pin both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

#: An error a policy names: an exception class (matched with its subclasses) or its name.
ErrorSpec = str | type[BaseException]


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
    backoff: Backoff | str = Backoff.EXPONENTIAL
    delay_ms: int = 1000
    max_delay_ms: int = 60_000
    jitter: float = 0.0
    # Exception classes (or their names); stored as names, the form errors travel in.
    retry_on: ErrorSpec | Iterable[ErrorSpec] = ()
    never_retry_on: ErrorSpec | Iterable[ErrorSpec] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "backoff", _backoff(self.backoff))
        object.__setattr__(self, "retry_on", error_names(self.retry_on, "retry_on"))
        object.__setattr__(self, "never_retry_on",
                           error_names(self.never_retry_on, "never_retry_on"))
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.delay_ms < 0 or self.max_delay_ms < 0:
            raise ValueError("delay_ms and max_delay_ms must be >= 0")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter is a fraction of the delay in [0, 1], got {self.jitter}")

    def allows_retry(self, failed_attempt: int, error_type: str,
                     lineage: Iterable[str] = ()) -> bool:
        """True when the attempt that just failed may be followed by another one.

        ``lineage`` names the error's classes from itself up to ``BaseException``, so naming
        a base class matches its subclasses; names are compared whole, never as substrings.
        """
        if failed_attempt > self.max_retries:
            return False
        names = {error_type, *lineage}
        if names & set(self.never_retry_names):
            return False
        return not self.retry_on_names or bool(names & set(self.retry_on_names))

    @property
    def retry_on_names(self) -> tuple[str, ...]:
        names: tuple[str, ...] = self.retry_on  # type: ignore[assignment]  # normalized
        return names

    @property
    def never_retry_names(self) -> tuple[str, ...]:
        names: tuple[str, ...] = self.never_retry_on  # type: ignore[assignment]
        return names

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


def _backoff(value: Any) -> Backoff:
    try:
        return Backoff(value)
    except ValueError:
        choices = ", ".join(repr(b.value) for b in Backoff)
        raise ValueError(f"backoff must be a Backoff or one of {choices}; got {value!r}"
                         ) from None


def error_names(specs: Any, what: str) -> tuple[str, ...]:
    """Normalize a policy's errors to class names: one class or name, or several."""
    if isinstance(specs, str | type):
        specs = (specs,)
    names = []
    for spec in specs:
        if isinstance(spec, type) and issubclass(spec, BaseException):
            names.append(spec.__name__)
        elif isinstance(spec, str) and spec.isidentifier():
            names.append(spec)
        else:
            raise ValueError(f"{what} takes exception classes (or their names); got {spec!r}")
    return tuple(names)


def lineage_of(error: BaseException) -> tuple[str, ...]:
    """The names of an error's classes, most specific first (what a worker reports)."""
    return tuple(cls.__name__ for cls in type(error).__mro__ if issubclass(cls, BaseException))


NO_RETRY = RetryPolicy(max_retries=0)

# A service's own loop retrying an infrastructure call (a broker or database outage) waits
# 0.4 s after the first failure in a row, doubling up to a cap: soon enough to recover fast,
# sparse enough not to hammer what is down. No jitter: one process, nothing to de-synchronise.
SERVICE_RETRY_FIRST_MS = 400
SERVICE_RETRY_CAP_MS = 5000


def service_retry_delay_ms(failures: int, cap_ms: int = SERVICE_RETRY_CAP_MS) -> int:
    """Milliseconds to wait after ``failures`` (>= 1) failures in a row, before trying again.

    The same exponential rule as a step's ``RetryPolicy``, without a retry limit: the loop
    keeps trying for as long as the service runs.
    """
    policy = RetryPolicy(backoff=Backoff.EXPONENTIAL, delay_ms=SERVICE_RETRY_FIRST_MS,
                         max_delay_ms=cap_ms)
    return policy.delay_before(next_attempt=failures + 1, random_fraction=0.0)
