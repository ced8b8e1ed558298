"""ErrorWithRetry: absolute or relative retry times, validated at construction."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from pgqueue import ConfigError, ErrorWithRetry, PgQueueError


def test_aware_datetime_is_stored_in_at_with_zero_delay() -> None:
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    ewr = ErrorWithRetry(RuntimeError("x"), when)
    assert ewr.at == when
    assert ewr.delay == 0.0


def test_aware_datetime_in_another_zone_is_kept() -> None:
    tz = dt.timezone(dt.timedelta(hours=2))
    when = dt.datetime(2030, 1, 1, tzinfo=tz)
    assert ErrorWithRetry(RuntimeError(), when).at == when


@pytest.mark.parametrize(
    ("retry_at", "seconds"),
    [
        (dt.timedelta(minutes=2), 120.0),
        (dt.timedelta(0), 0.0),
        (1.5, 1.5),
        (0, 0.0),
        (7, 7.0),
    ],
)
def test_relative_delays_are_stored_in_delay(retry_at: dt.timedelta | float, seconds: float) -> None:
    ewr = ErrorWithRetry(RuntimeError("x"), retry_at)
    assert ewr.at is None
    assert ewr.delay == seconds
    assert isinstance(ewr.delay, float)


def test_naive_datetime_is_rejected() -> None:
    with pytest.raises(ConfigError, match="timezone-aware"):
        ErrorWithRetry(RuntimeError(), dt.datetime(2030, 1, 1))  # noqa: DTZ001 - the point of the test


@pytest.mark.parametrize("retry_at", [-1, -0.001, dt.timedelta(seconds=-1), math.nan, float("-inf")])
def test_negative_and_nan_delays_are_rejected(retry_at: dt.timedelta | float) -> None:
    with pytest.raises(ConfigError, match="delay"):
        ErrorWithRetry(RuntimeError(), retry_at)


@pytest.mark.parametrize("retry_at", [math.inf, dt.timedelta.max])
def test_delays_postgres_cannot_represent_are_rejected(retry_at: dt.timedelta | float) -> None:
    with pytest.raises(ConfigError):
        ErrorWithRetry(RuntimeError(), retry_at)


def test_str_is_the_wrapped_errors_message() -> None:
    inner = ValueError("the real reason")
    ewr = ErrorWithRetry(inner, 5)
    assert str(ewr) == "the real reason"
    assert ewr.error is inner


def test_repr_shows_error_and_when() -> None:
    assert repr(ErrorWithRetry(ValueError("v"), 5)) == "ErrorWithRetry(ValueError('v'), +5s)"
    when = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert when.isoformat() in repr(ErrorWithRetry(ValueError("v"), when))


def test_it_is_a_pgqueue_error_and_can_be_raised() -> None:
    with pytest.raises(PgQueueError, match="boom"):
        raise ErrorWithRetry(RuntimeError("boom"), 1)
