from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasksaga.core import Backoff, RetryPolicy
from tasksaga.core.retry import service_retry_delay_ms


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


def test_backoff_given_as_its_value_backs_off_as_named() -> None:
    constant = RetryPolicy(max_retries=3, backoff="constant", delay_ms=500)
    assert [constant.delay_before(n, 0.0) for n in (2, 3, 4)] == [500, 500, 500]
    linear = RetryPolicy(max_retries=3, backoff="linear", delay_ms=500)
    assert [linear.delay_before(n, 0.0) for n in (2, 3, 4)] == [500, 1000, 1500]


def test_an_unknown_backoff_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="'constant', 'linear', 'exponential'"):
        RetryPolicy(backoff="exponentail")


class CardError(Exception):
    pass


class CardNetworkTimeout(CardError):
    pass


def test_retry_on_takes_exception_classes_and_matches_their_subclasses() -> None:
    from tasksaga.core.retry import lineage_of

    policy = RetryPolicy(max_retries=2, retry_on=CardError)
    assert policy.retry_on_names == ("CardError",)
    timeout = CardNetworkTimeout("slow")
    assert policy.allows_retry(1, "CardNetworkTimeout", lineage_of(timeout))
    assert not policy.allows_retry(1, "KeyError", lineage_of(KeyError("k")))


def test_error_names_are_matched_whole_never_as_substrings() -> None:
    policy = RetryPolicy(max_retries=2, never_retry_on="CardNetworkTimeout")
    assert policy.never_retry_names == ("CardNetworkTimeout",)
    assert policy.allows_retry(1, "Card")  # "Card" is not "CardNetworkTimeout"
    assert not policy.allows_retry(1, "CardNetworkTimeout")


def test_retry_on_refuses_what_is_not_an_exception() -> None:
    with pytest.raises(ValueError, match="retry_on takes exception classes"):
        RetryPolicy(retry_on=[int])  # type: ignore[list-item]


def test_a_service_retry_loop_waits_400_ms_then_doubles_up_to_its_cap() -> None:
    assert [service_retry_delay_ms(n) for n in range(1, 7)] == [400, 800, 1600, 3200, 5000,
                                                                5000]
    assert service_retry_delay_ms(3, cap_ms=1000) == 1000
    assert service_retry_delay_ms(10_000) == 5000  # no overflow after a long outage
