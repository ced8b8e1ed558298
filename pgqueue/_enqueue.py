"""What schedule() and schedule_many() check before anything is written, and what they return.

:func:`prepare` resolves and checks everything but the params (the type, queue, due
time, priority and timeout) once per call; :meth:`Target.encode` turns each params value
into the stored JSON, through the type's model when it has one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import NamedTuple

from ._codec import encode
from ._config import check_name, check_priority, check_run_at, check_timeout
from ._errors import ConfigError
from ._params import ParamsAdapter
from ._registry import Registry
from .store import NewJobs

__all__ = [
    "MAX_DEPENDENCIES",
    "MAX_TENANT",
    "JobId",
    "Target",
    "check_depends_on",
    "check_tenant",
    "check_tenants",
    "prepare",
]


MAX_DEPENDENCIES = 1000  # dependencies one job may have
MAX_TENANT = 200  # characters in a tenant, as in queue and type names


class JobId(int):
    """A job's id as ``schedule()`` returns it: an ``int``, and whether this call created it.

    ``inserted`` is False when ``unique_key`` found a job that already held the key.
    """

    inserted: bool = True  # the class's default: only a found id sets its own

    @classmethod
    def of(cls, job_id: int, *, inserted: bool) -> JobId:
        """The id, marked as created by this call or found."""
        jid = cls(job_id)
        if not inserted:
            jid.inserted = False
        return jid


class Target(NamedTuple):
    """Where and when the jobs of one call go, checked."""

    jobs: NewJobs
    """What the store's inserts take."""
    params: ParamsAdapter | None
    keep_s: float
    """Seconds a unique key stays held after the job ends (the type's ``unique_for``)."""
    keep_after: tuple[str, ...]
    """The end states that keep it (the type's ``unique_kept_after``)."""

    def encode(self, params: object, what: str = "params") -> str:
        """The params as stored: validated by the type's model first, when it has one."""
        if self.params is not None:
            params = self.params.to_json(self.params.validate(params))
        return encode(params, what=what)


def prepare(  # noqa: PLR0917 - schedule()'s own arguments, passed straight through
    registry: Registry,
    type_: str,
    queue: str | None,
    run_at: dt.datetime | dt.timedelta | None,
    priority: int,
    timeout: float | None,
) -> Target:
    """Check everything but the params; shared by schedule() and schedule_many().

    A call that leaves every option at its default gets the type's target as checked the
    first time (``Registry.targets``): ``schedule()`` is on the pickup-latency path.
    """
    plain = queue is None and run_at is None and timeout is None and type(priority) is int and priority == 0
    if plain:
        known = registry.targets.get(type_)
        if known is not None:
            return known
    jt = registry.require(type_)
    q = jt.queue if queue is None else queue
    check_name("queue", q)
    at, delay = check_run_at(run_at)
    limit = check_timeout("timeout", timeout)
    # The type's timeout is stored on the job too, so rescue knows the run's deadline.
    timeout_s = jt.timeout if limit is None else limit
    jobs = NewJobs(q, type_, at, check_priority(priority), timeout_s, delay)
    target = Target(jobs, jt.params, jt.unique_for, jt.unique_kept_after)
    if plain:
        registry.targets[type_] = target
    return target


def check_depends_on(depends_on: Iterable[int] | None) -> list[int]:
    """The dependency ids, ascending and without repeats; ConfigError for anything else."""
    if depends_on is None:
        return []
    if isinstance(depends_on, str | bytes) or not isinstance(depends_on, Iterable):
        raise ConfigError(f"depends_on must be an iterable of job ids, got {depends_on!r}")
    ids = list(depends_on)
    for dep in ids:
        if isinstance(dep, bool) or not isinstance(dep, int) or dep < 1:
            raise ConfigError(f"depends_on must hold job ids (integers >= 1), got {dep!r}")
    unique = sorted(set(ids))
    if len(unique) > MAX_DEPENDENCIES:
        raise ConfigError(f"depends_on holds {len(unique)} jobs; at most {MAX_DEPENDENCIES}")
    return unique


def check_tenant(tenant: object, what: str = "tenant") -> str:
    """A tenant as given, or ConfigError: a non-empty str of at most 200 characters, no NUL.

    Shared by ``schedule(tenant=)`` and the ``tenant=`` filters of listing and stats, so a
    filter that no stored tenant could match is refused with the same message.
    """
    if not isinstance(tenant, str) or not tenant or len(tenant) > MAX_TENANT or "\x00" in tenant:
        raise ConfigError(
            f"{what} must be a non-empty string of at most {MAX_TENANT} characters without NUL, "
            f"got {tenant!r:.80}"
        )
    return tenant


def check_tenants(tenant: object, count: int) -> list[str | None] | None:
    """``schedule_many``'s ``tenant=``: one str for every job, or one str or None per job.

    None (or every entry None) is None: the insert then sends a NULL array, no tenants.
    A sequence must hold exactly ``count`` entries, one per params value.
    """
    if tenant is None:
        return None
    if isinstance(tenant, str):
        return [check_tenant(tenant)] * count
    if isinstance(tenant, bytes | dict) or not isinstance(tenant, Iterable):
        raise ConfigError(
            f"tenant must be a string or an iterable of strings (one per job), got {tenant!r:.80}"
        )
    each = list(tenant)
    if len(each) != count:
        raise ConfigError(f"tenant holds {len(each)} entries for {count} jobs: give one per params value")
    checked = [None if t is None else check_tenant(t, f"tenant[{i}]") for i, t in enumerate(each)]
    return checked if any(t is not None for t in checked) else None
