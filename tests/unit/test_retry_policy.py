from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasksaga.core import Backoff, RetryPolicy


def test_exponential_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy(max_retries=9, backoff=Backoff.EXPONENTIAL, delay_ms=100,
                         max_delay_ms=1000)
    assert [policy.delay_before(a, 0.0) for a in range(2, 8)] == [100, 200, 400, 800, 1000, 1000]


def test_linear_and_constant_backoff() -> None:
    linear = RetryPolicy(max_retries=5, backoff=Backoff.LINEAR, delay_ms=100)
    constant = RetryPolicy(max_retries=5, backoff=Backoff.CONSTANT, delay_ms=3000)
    assert [linear.delay_before(a, 0.0) for a in (2, 3, 4)] == [100, 200, 300]
    assert [constant.delay_before(a, 0.0) for a in (2, 3, 4)] == [3000, 3000, 3000]


@given(st.integers(2, 50), st.floats(0.0, 0.999), st.floats(0.0, 1.0))
def test_jitter_never_exceeds_the_cap_nor_goes_negative(
    attempt: int, fraction: float, jitter: float
) -> None:
    policy = RetryPolicy(max_retries=60, delay_ms=250, max_delay_ms=10_000, jitter=jitter)
    assert 0 <= policy.delay_before(attempt, fraction) <= 10_000


def test_error_types_that_are_never_retried_and_only_retried() -> None:
    policy = RetryPolicy(max_retries=3, retry_on=("Timeout",), never_retry_on=("Auth",))
    assert policy.allows_retry(1, "Timeout")
    assert not policy.allows_retry(1, "Other")
    assert not policy.allows_retry(1, "Auth")
    assert not policy.allows_retry(4, "Timeout")


def test_a_negative_retry_count_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="max_retries must be >= 0"):
        RetryPolicy(max_retries=-1)
