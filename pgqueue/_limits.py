"""Global limits of a queue: the records the API returns and the checks every backend shares.

A queue's limit binds every worker of the schema, whatever process it runs in, because the
claim enforces it in the database (``sql/011_queue_limits.sql``, ``claim_limited``):

- ``concurrency``: jobs of the queue running at once. Alone (no ``per_key``, no ``rate``)
  it is kept by slot leases (``lease_slots``): each worker leases slots, claims the queue's
  jobs with the plain claim while it holds any, and runs at most its slots' worth of them
  at once, so prefetched jobs wait without holding a slot. With ``per_key`` or ``rate`` it
  counts jobs held by workers (claimed and not finished), as those two do;
- ``per_key`` with ``key``: at most that many held jobs per value of the params field
  ``key`` (a top-level field, compared as text: 42 and "42" are one key); a job whose
  params lack the field has no key, and only the other limits apply to it;
- ``per_key`` with ``key=TENANT``: the same, per job tenant (``schedule(..., tenant=)``)
  instead of a params field; a job without a tenant has no key. :data:`TENANT` is a
  reserved key name ("@tenant"), so a params field of that exact name cannot be a key;
- ``rate``: at most ``count`` claims in any window of ``per``.

A claim is a start: a job handed back unstarted at shutdown still used a start of the window.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Sequence
from typing import NamedTuple

from ._config import check_name
from ._errors import MAX_DELAY_S, ConfigError
from ._models import Row

__all__ = ["MAX_LIMIT", "TENANT", "LimitSeen", "LimitedClaim", "QueueLimit", "RateLimit", "check_limit"]

MAX_LIMIT = 2**31 - 1  # the integer columns' range
TENANT = "@tenant"
"""``set_queue_limit(key=TENANT)``: key a per-key limit by the job's tenant (sql/014 reserves it)."""


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` claims (job starts) of a queue in any window of ``per``."""

    count: int
    """Starts allowed per window."""
    per: dt.timedelta
    """The window's length."""

    def __post_init__(self) -> None:
        _check_count("rate count", self.count)
        if not isinstance(self.per, dt.timedelta):
            raise ConfigError(f"rate period must be a timedelta, got {self.per!r}")
        seconds = self.per.total_seconds()
        if not (math.isfinite(seconds) and 0 < seconds <= MAX_DELAY_S):
            raise ConfigError(f"rate period must be longer than 0 and at most a century, got {self.per!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class QueueLimit:
    """The limits of one queue, as stored (``Scheduler.set_queue_limit``)."""

    queue: str
    """The queue they apply to."""
    concurrency: int | None = None
    """Jobs of the queue held by all workers at once; None: no such limit."""
    per_key: int | None = None
    """Jobs held at once per value of the params field ``key``; None: no such limit."""
    key: str | None = None
    """The top-level params field whose value is a job's key (with ``per_key``); :data:`TENANT`:
    the job's tenant."""
    rate: RateLimit | None = None
    """Starts allowed per window; None: no rate limit."""
    updated_at: dt.datetime | None = None
    """When the limit was last set (the database's clock); None before it is stored."""


class LimitSeen(NamedTuple):
    """A worker's look at one limited queue (a store's ``queue_limited``)."""

    concurrency: int | None
    """Its concurrency limit; None: none."""
    leased: bool
    """Concurrency only: the worker leases slots (``lease_slots``) instead of ``job_claim_limited``."""


@dataclasses.dataclass(frozen=True, slots=True)
class LimitedClaim:
    """What one claim of a limited queue returns (a store's ``job_claim_limited``)."""

    rows: list[Row]
    """The claimed jobs, as ``job_claim_many`` returns them (``ROW_*`` order), any order."""
    capped: bool
    """A limit held the claim back: more jobs are due than it was allowed to take."""
    free_in: float | None
    """With ``capped``: seconds (database clock) until the rate window frees a start; None
    when it is the concurrency or per-key limit that binds (a slot frees when a job ends)."""


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise ConfigError(f"{name} must be an integer from 1 to {MAX_LIMIT}, got {value!r}")
    return value


def _rate(rate: object) -> RateLimit | None:
    """A RateLimit from ``RateLimit``, ``(count, timedelta)`` or ``(count, seconds)``."""
    if rate is None or isinstance(rate, RateLimit):
        return rate
    if isinstance(rate, str) or not isinstance(rate, Sequence) or len(rate) != 2:  # noqa: PLR2004 - a pair
        raise ConfigError(f"rate must be a RateLimit or a (count, period) pair, got {rate!r}")
    count, per = rate
    if isinstance(per, bool) or not isinstance(per, int | float | dt.timedelta):
        raise ConfigError(f"rate period must be a timedelta or a number of seconds, got {per!r}")
    if not isinstance(per, dt.timedelta):
        if not math.isfinite(per) or not 0 < per <= MAX_DELAY_S:
            raise ConfigError(f"rate period must be longer than 0 and at most a century, got {per!r}")
        per = dt.timedelta(seconds=per)
    return RateLimit(count, per)


def check_limit(
    queue: str,
    *,
    concurrency: int | None,
    per_key: int | None,
    key: str | None,
    rate: RateLimit | tuple[int, dt.timedelta | float] | None,
) -> QueueLimit:
    """The validated limit, or ConfigError naming the first bad argument (nothing is written)."""
    check_name("queue", queue)
    if concurrency is not None:
        _check_count("concurrency", concurrency)
    if per_key is not None:
        _check_count("per_key", per_key)
    if key is not None:
        check_name("key", key)
    if (per_key is None) != (key is None):
        raise ConfigError("per_key and key go together: per_key=N limits the jobs held per value of key")
    checked = _rate(rate)
    if concurrency is None and per_key is None and checked is None:
        raise ConfigError(
            "give at least one of concurrency=, per_key= (with key=) or rate=; "
            "remove_queue_limit() removes a limit"
        )
    return QueueLimit(queue, concurrency, per_key, key, checked)
