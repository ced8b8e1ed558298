"""Retry decisions: pgxjob's linear backoff, exponential backoff with jitter, chain()."""

from __future__ import annotations

import datetime as dt
import math
import random

import pytest

import pgqueue
from pgqueue import ConfigError, ErrorWithRetry, ExponentialBackoff, Job, LinearBackoff, chain


def job(errors: int) -> Job:
    return pgqueue.Job(id=1, type="t", errors=errors)


# -- LinearBackoff (pgxjob's RetryLinearBackoffErrorFilter) -------------------------------


@pytest.mark.parametrize("errors", [0, 1, 2])
def test_linear_retries_with_delay_base_times_errors_plus_one(errors: int) -> None:
    err = RuntimeError("boom")
    out = LinearBackoff(max_retries=3, base_delay=10)(job(errors), err)
    assert isinstance(out, ErrorWithRetry)
    assert out.delay == 10 * (errors + 1)
    assert out.at is None
    assert out.error is err


@pytest.mark.parametrize("errors", [3, 4, 100])
def test_linear_returns_the_original_error_after_max_retries(errors: int) -> None:
    err = RuntimeError("boom")
    assert LinearBackoff(max_retries=3, base_delay=10)(job(errors), err) is err


def test_linear_max_retries_zero_never_retries() -> None:
    err = RuntimeError("boom")
    assert LinearBackoff(max_retries=0, base_delay=10)(job(0), err) is err


@pytest.mark.parametrize("errors", [0, 2, 3, 50])
def test_linear_passes_an_error_with_retry_through_unchanged(errors: int) -> None:
    # The count check comes first and returns the error unchanged; an ErrorWithRetry
    # returned unchanged still means "retry", even past max_retries (pgxjob semantics).
    ewr = ErrorWithRetry(RuntimeError("x"), 42)
    assert LinearBackoff(max_retries=3, base_delay=10)(job(errors), ewr) is ewr


def test_linear_errors_outside_retry_on_are_final() -> None:
    policy = LinearBackoff(max_retries=3, base_delay=10, retry_on=(KeyError,))
    err = ValueError("not retried")
    assert policy(job(0), err) is err
    retried = policy(job(0), KeyError("k"))
    assert isinstance(retried, ErrorWithRetry)
    assert retried.delay == 10


def test_linear_retry_on_matches_subclasses() -> None:
    policy = LinearBackoff(max_retries=3, base_delay=1, retry_on=(LookupError,))
    assert isinstance(policy(job(0), KeyError("k")), ErrorWithRetry)


def test_linear_accepts_a_timedelta_base() -> None:
    policy = LinearBackoff(max_retries=5, base_delay=dt.timedelta(minutes=1))
    out = policy(job(2), RuntimeError())
    assert isinstance(out, ErrorWithRetry)
    assert out.delay == 180.0


def test_linear_float_base() -> None:
    out = LinearBackoff(max_retries=5, base_delay=0.5)(job(1), RuntimeError())
    assert isinstance(out, ErrorWithRetry)
    assert out.delay == 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1, "base_delay": 10},
        {"max_retries": 3, "base_delay": -1},
        {"max_retries": 3, "base_delay": dt.timedelta(seconds=-1)},
        {"max_retries": 3, "base_delay": math.nan},
        {"max_retries": 3, "base_delay": 10, "retry_on": ()},
        {"max_retries": 3, "base_delay": 10, "retry_on": (int,)},
    ],
)
def test_linear_rejects_bad_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        LinearBackoff(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"LinearBackoff|retry_on"):
        LinearBackoff(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("retry_on", [[ValueError], ValueError])
def test_linear_retry_on_accepts_a_type_or_a_list(retry_on: object) -> None:
    policy = LinearBackoff(max_retries=3, base_delay=10, retry_on=retry_on)  # type: ignore[arg-type]
    assert policy.retry_on == (ValueError,)
    assert isinstance(policy(job(0), ValueError("x")), ErrorWithRetry)
    assert not isinstance(policy(job(0), KeyError("x")), ErrorWithRetry)


# -- ExponentialBackoff ------------------------------------------------------------------


@pytest.mark.parametrize("errors", [0, 1, 2, 5, 8, 9, 10, 20, 63, 64, 100])
def test_exponential_without_jitter_is_min_cap_base_two_to_the_errors(errors: int) -> None:
    policy = ExponentialBackoff(max_retries=1000, base=1.0, cap=300.0, jitter=0)
    expected = 300.0 if errors >= 64 else min(300.0, 1.0 * 2**errors)
    assert policy.delay(errors) == expected
    out = policy(job(errors), RuntimeError())
    assert isinstance(out, ErrorWithRetry)
    assert out.delay == expected


def test_exponential_with_jitter_stays_within_bounds_and_under_cap() -> None:
    base, cap = 0.5, 60.0
    policy = ExponentialBackoff(max_retries=1000, base=base, cap=cap, jitter=0.2, rng=random.Random(1234))
    for errors in [*range(40), 63, 64, 65, 100]:
        d = min(cap, base * 2**errors)
        for _ in range(200):
            got = policy.delay(errors)
            assert d * 0.8 <= got <= min(cap, d * 1.2), (errors, got)
            assert got <= cap


def test_exponential_jitter_is_deterministic_with_a_seeded_rng() -> None:
    a = ExponentialBackoff(max_retries=10, jitter=0.5, rng=random.Random(7))
    b = ExponentialBackoff(max_retries=10, jitter=0.5, rng=random.Random(7))
    assert [a.delay(e) for e in range(10)] == [b.delay(e) for e in range(10)]


def test_exponential_timedelta_base_and_cap() -> None:
    policy = ExponentialBackoff(
        max_retries=10, base=dt.timedelta(seconds=2), cap=dt.timedelta(seconds=10), jitter=0
    )
    assert [policy.delay(e) for e in range(4)] == [2.0, 4.0, 8.0, 10.0]


def test_exponential_follows_the_same_count_and_retry_on_rules() -> None:
    policy = ExponentialBackoff(max_retries=2, jitter=0, retry_on=(KeyError,))
    err = KeyError("k")
    assert policy(job(2), err) is err
    other = ValueError("v")
    assert policy(job(0), other) is other
    ewr = ErrorWithRetry(err, 1)
    assert policy(job(9), ewr) is ewr


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"base": 10.0, "cap": 5.0}, "cap"),
        ({"base": dt.timedelta(seconds=10), "cap": dt.timedelta(seconds=9)}, "cap"),
        ({"jitter": -0.01}, "jitter"),
        ({"jitter": 1.01}, "jitter"),
        ({"jitter": math.nan}, "jitter"),
        ({"base": -1.0}, "base"),
        ({"retry_on": ()}, "retry_on"),
    ],
)
def test_exponential_rejects_bad_options(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        ExponentialBackoff(max_retries=3, **kwargs)  # type: ignore[arg-type]


def test_exponential_rejects_negative_max_retries() -> None:
    with pytest.raises(ConfigError, match="max_retries"):
        ExponentialBackoff(max_retries=-1)


@pytest.mark.parametrize("jitter", [0.0, 1.0])
def test_exponential_jitter_bounds_are_inclusive(jitter: float) -> None:
    ExponentialBackoff(max_retries=1, jitter=jitter)


# -- chain() -----------------------------------------------------------------------------


class Recorder:
    """A filter that records its calls and wraps the error it gets."""

    def __init__(self, name: str, calls: list[tuple[str, BaseException]]) -> None:
        self.name = name
        self.calls = calls

    def __call__(self, job: Job, error: BaseException, /) -> BaseException:
        self.calls.append((self.name, error))
        return RuntimeError(f"{self.name}({error})")


def test_chain_applies_filters_left_to_right() -> None:
    calls: list[tuple[str, BaseException]] = []
    first, second = Recorder("first", calls), Recorder("second", calls)
    original = ValueError("e")
    out = chain(first, second)(job(0), original)
    assert [name for name, _ in calls] == ["first", "second"]
    assert calls[0][1] is original
    assert str(calls[1][1]) == "first(e)"  # the second got what the first returned
    assert str(out) == "second(first(e))"


def test_chain_of_one_filter_is_that_filter() -> None:
    policy = LinearBackoff(max_retries=1, base_delay=3)
    out = chain(policy)(job(0), RuntimeError())
    assert isinstance(out, ErrorWithRetry)
    assert out.delay == 3


def test_chain_composes_real_policies() -> None:
    # A classifier that makes KeyError final by wrapping it, then the backoff.
    def final_keyerrors(job: Job, error: BaseException, /) -> BaseException:
        return LookupError("final") if isinstance(error, KeyError) else error

    policy = chain(final_keyerrors, LinearBackoff(max_retries=3, base_delay=1, retry_on=(ValueError,)))
    assert isinstance(policy(job(0), ValueError()), ErrorWithRetry)
    assert not isinstance(policy(job(0), KeyError()), ErrorWithRetry)


def test_chain_needs_at_least_one_filter() -> None:
    with pytest.raises(ConfigError):
        chain()
