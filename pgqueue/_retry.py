"""Retry decisions: composable error filters (pgxjob's ``ErrorFilter``) and backoff math.

A filter takes the job and the error of its run and returns an error: an
:class:`ErrorWithRetry` means "run again then", anything else is final. Filters compose by
plain function application (:func:`chain`), so a policy reads as a pipeline. No filter at
all means no retries (pgxjob's default), but an ``ErrorWithRetry`` raised by the handler
is still honoured.

Delays are relative: the database adds them to its own ``now()`` when the flush writes the
retry, so worker clocks never decide when a job runs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Iterable
from typing import Protocol, cast

from ._errors import ConfigError, ErrorWithRetry, check_delay
from ._models import Job

__all__ = ["ErrorFilter", "ExponentialBackoff", "LinearBackoff", "chain"]


class ErrorFilter(Protocol):
    """Maps a run's error to a retry (:class:`ErrorWithRetry`) or a final error."""

    def __call__(self, job: Job, error: BaseException, /) -> BaseException:
        """Return ``ErrorWithRetry`` to run the job again, any other error to stop."""
        ...


_seconds = check_delay

ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


def _exception_types(retry_on: object) -> tuple[type[BaseException], ...]:
    """One exception type or an iterable of them, as the tuple ``isinstance`` needs."""
    out: tuple[object, ...] = ()
    if isinstance(retry_on, type):
        out = (retry_on,)
    elif isinstance(retry_on, Iterable) and not isinstance(retry_on, str | bytes):
        out = tuple(retry_on)
    if not out or not all(isinstance(t, type) and issubclass(t, BaseException) for t in out):
        raise ConfigError(f"retry_on must be an exception type or a non-empty list of them, got {retry_on!r}")
    return cast("tuple[type[BaseException], ...]", out)


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class LinearBackoff:
    """pgxjob's ``RetryLinearBackoffErrorFilter``: retry at now + base × (errors + 1).

    After ``max_retries`` failed runs the original error is final, so a job runs at most
    ``max_retries + 1`` times. The count check comes first, exactly as in pgxjob: an
    ``ErrorWithRetry`` from the handler passes through unchanged (and so still retries).
    Errors that are not instances of ``retry_on`` are final at once. The default covers
    whatever a handler raised, ``BaseException`` subclasses such as ``SystemExit`` included:
    each of them is that run's failure, like any error.
    """

    max_retries: int
    base_delay: float | dt.timedelta
    retry_on: ExceptionTypes = (BaseException,)

    def __post_init__(self) -> None:
        _check_count("LinearBackoff.max_retries", self.max_retries)
        _seconds(self.base_delay, "LinearBackoff.base_delay")
        object.__setattr__(self, "retry_on", _exception_types(self.retry_on))

    def __call__(self, job: Job, error: BaseException, /) -> BaseException:
        """Apply the policy."""
        if job.errors >= self.max_retries or isinstance(error, ErrorWithRetry):
            return error
        if not isinstance(error, self.retry_on):
            return error
        return ErrorWithRetry(error, _seconds(self.base_delay, "base_delay") * (job.errors + 1))


@dataclasses.dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """Retry after ``min(cap, base × 2**errors)``, spread by ±``jitter`` (a fraction).

    Jitter keeps a burst of jobs that failed together (a database blip, a rate limit) from
    retrying in lockstep. The result never exceeds ``cap``. Same count and ``retry_on``
    rules as :class:`LinearBackoff`.
    """

    max_retries: int
    base: float | dt.timedelta = 1.0
    cap: float | dt.timedelta = 300.0
    jitter: float = 0.1
    retry_on: ExceptionTypes = (BaseException,)
    rng: random.Random = dataclasses.field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_count("ExponentialBackoff.max_retries", self.max_retries)
        base, cap = (
            _seconds(self.base, "ExponentialBackoff.base"),
            _seconds(self.cap, "ExponentialBackoff.cap"),
        )
        if cap < base:
            raise ConfigError(f"ExponentialBackoff.cap ({cap}) must be >= base ({base})")
        if isinstance(self.jitter, bool) or not 0 <= self.jitter <= 1:
            raise ConfigError(f"ExponentialBackoff.jitter must be within [0, 1], got {self.jitter}")
        object.__setattr__(self, "retry_on", _exception_types(self.retry_on))

    def delay(self, errors: int) -> float:
        """Seconds to wait after the ``errors``-th failure (0-based), jitter included."""
        base, cap = _seconds(self.base, "base"), _seconds(self.cap, "cap")
        raw = cap if errors >= 64 else min(cap, base * (2**errors))  # noqa: PLR2004 - 2**64 s is forever
        if self.jitter:
            raw *= self.rng.uniform(1 - self.jitter, 1 + self.jitter)
        return min(cap, raw)

    def __call__(self, job: Job, error: BaseException, /) -> BaseException:
        """Apply the policy."""
        if job.errors >= self.max_retries or isinstance(error, ErrorWithRetry):
            return error
        if not isinstance(error, self.retry_on):
            return error
        return ErrorWithRetry(error, self.delay(job.errors))


@dataclasses.dataclass(frozen=True, slots=True)
class _Chain:
    filters: tuple[ErrorFilter, ...]

    def __call__(self, job: Job, error: BaseException, /) -> BaseException:
        for f in self.filters:
            error = f(job, error)
        return error


def chain(*filters: ErrorFilter) -> ErrorFilter:
    """Compose filters left to right: each gets the error the previous one returned."""
    if not filters:
        raise ConfigError("chain() needs at least one filter")
    return _Chain(filters)
