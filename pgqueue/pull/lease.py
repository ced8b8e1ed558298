"""A job leased by a pull consumer, and its token.

A lease is fenced exactly as a worker's run is: by the job's id, the consumer that holds it
(its row in ``workers``) and the attempt the claim started. The token carries those three
numbers, so any process with access to the same schema can act on a lease (an HTTP API
behind a load balancer, a consumer that restarted): the database row is the only state.
Tokens are not secrets; the API that hands them out authenticates its callers.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, NoReturn

from pgqueue._boundary import translate
from pgqueue._errors import ConfigError, check_delay
from pgqueue._models import Job

if TYPE_CHECKING:
    from .consumer import Consumer

__all__ = ["DEFAULT_LEASE_S", "MAX_LEASE_S", "Lease", "check_lease", "lease_token", "parse_token"]

DEFAULT_LEASE_S = 30.0  # a lease's duration unless given: a heartbeat every ~10 s keeps it
MAX_LEASE_S = 86400.0  # a day: a lease longer than that hides a dead consumer for too long

_TOKEN_RE = re.compile(r"(\d{1,19})-(\d{1,10})-(\d{1,19})")
_BIGINT_MAX = 2**63 - 1
_INT_MAX = 2**31 - 1


def check_lease(value: float | dt.timedelta) -> float:
    """A lease duration: more than 0 seconds and at most a day; ConfigError otherwise."""
    seconds = check_delay(value, "lease")
    if not 0 < seconds <= MAX_LEASE_S:
        raise ConfigError(f"lease must be more than 0 seconds and at most a day, got {value!r}")
    return seconds


def lease_token(job_id: int, attempt: int, owner: int) -> str:
    """``<job id>-<attempt>-<consumer id>``: URL-safe, and all a lease call needs."""
    return f"{job_id}-{attempt}-{owner}"


def parse_token(token: object) -> tuple[int, int, int]:
    """(job id, attempt, owner) of a token; ConfigError (a ValueError) for anything else."""
    m = _TOKEN_RE.fullmatch(token) if isinstance(token, str) else None
    if m is None:
        raise ConfigError(f"malformed lease token {token!r}: expected <job id>-<attempt>-<consumer id>")
    job_id, attempt, owner = (int(g) for g in m.groups())
    if not (1 <= job_id <= _BIGINT_MAX and 1 <= attempt <= _INT_MAX and 1 <= owner <= _BIGINT_MAX):
        raise ConfigError(f"malformed lease token {token!r}: a number is out of range")
    return job_id, attempt, owner


class Lease:
    """A job a pull consumer holds: its :class:`Job`, its token and its deadline.

    ``expires_at`` is the lease's deadline on the database's clock (aware, UTC). Past it,
    without a heartbeat, the job is freed for another consumer and the attempt counts, as a
    dead worker's run does. Every call is fenced by the token: once the lease no longer
    holds the job, it raises :class:`~pgqueue.LeaseLost` and changes nothing.
    """

    __slots__ = ("_consumer", "_until", "duration", "job", "leased_at", "owner")

    def __init__(  # noqa: PLR0917 - built by the consumer only
        self, consumer: Consumer, job: Job, owner: int, leased_at: float, until: float, duration: float
    ) -> None:
        # Once per leased job: plain assignments; the token and the datetime are made on
        # first use, since a consumer that finishes at once never reads them.
        self._consumer = consumer
        self.job = job
        """The leased job (``job.attempt`` is this lease's attempt)."""
        self.owner = owner
        """The id of the pull consumer (its ``workers`` row) that holds the lease."""
        self.leased_at = leased_at
        """When the lease was taken (epoch seconds, the database's clock): the run's start."""
        self._until = until
        self.duration = duration
        """Seconds a heartbeat extends the lease by (the ``lease`` it was taken with)."""

    @property
    def token(self) -> str:
        """The lease's token: ``scheduler.get_lease(token)`` gives the lease back anywhere."""
        return lease_token(self.job.id, self.job.attempt, self.owner)

    @property
    def expires_at(self) -> dt.datetime:
        """The lease's deadline on the database's clock (aware, UTC)."""
        return dt.datetime.fromtimestamp(self._until, dt.UTC)

    @property
    def attempt(self) -> int:
        """The attempt this lease runs (1-based; claims so far, this one included)."""
        return self.job.attempt

    def __repr__(self) -> str:
        return f"<Lease {self.token} {self.job.type!r} until {self.expires_at.isoformat()}>"

    async def heartbeat(self, lease: float | dt.timedelta | None = None) -> dt.datetime:
        """Move the deadline to now + ``lease`` (default: the duration it was taken for).

        Returns the new deadline. Raises :class:`~pgqueue.LeaseLost` when the lease no
        longer holds the job, and :class:`~pgqueue.JobCancelled` when the job was cancelled
        (stop working on it; ``fail()`` or ``requeue()`` then ends it as cancelled).
        """
        duration = self.duration if lease is None else check_lease(lease)
        try:
            self._until = await self._consumer.heartbeat(self, duration)
        except Exception as exc:  # noqa: BLE001 - re-raised, translated when it is the driver's
            _reraise("lease heartbeat", self._consumer.schema, exc)
        return self.expires_at

    async def finish(self, result: object = None) -> None:
        """End the job as succeeded with ``result`` (JSON-encodable, stored with the run)."""
        try:
            await self._consumer.finish(self, result)
        except Exception as exc:  # noqa: BLE001 - re-raised, translated when it is the driver's
            _reraise("lease finish", self._consumer.schema, exc)

    async def fail(
        self, error: BaseException | str, retry_at: dt.datetime | dt.timedelta | float | None = None
    ) -> dt.datetime | None:
        """Record a failed run; returns when the job runs again, or None when it failed for good.

        With ``retry_at`` (an aware datetime, or a delay) the job runs again then; without
        it the type's error filter decides, as for a worker's run (a type this scheduler
        did not register has none: the failure is final). A job at its last allowed attempt
        (``max_attempts``) fails for good either way; a cancelled job ends as cancelled.
        """
        try:
            return await self._consumer.fail(self, error, retry_at)
        except Exception as exc:  # noqa: BLE001 - re-raised, translated when it is the driver's
            _reraise("lease fail", self._consumer.schema, exc)

    async def release(self) -> None:
        """Give back a job this consumer never started: it runs again now, no attempt counted.

        Its run row says ``snoozed`` (a run that does not count against ``max_attempts``),
        so each claim keeps its row; a cancelled job ends as cancelled instead.
        """
        try:
            await self._consumer.release(self)
        except Exception as exc:  # noqa: BLE001 - re-raised, translated when it is the driver's
            _reraise("lease release", self._consumer.schema, exc)

    async def requeue(self) -> bool:
        """Give the job back to run again now; False when that was its last allowed attempt.

        The run counts as an attempt (osbuild's ``RequeueOrFinishJob``): a job requeued at
        its last attempt ends as failed instead, and a cancelled job as cancelled.
        """
        try:
            return await self._consumer.requeue(self)
        except Exception as exc:  # noqa: BLE001 - re-raised, translated when it is the driver's
            _reraise("lease requeue", self._consumer.schema, exc)


def _reraise(action: str, schema: str, exc: Exception) -> NoReturn:
    """Raise pgqueue's error for a driver error (see ``translate``), else the error itself.

    The lease's calls use this instead of ``translated()``: an async context manager per
    call is a visible share of a finish when thousands are written a second.
    """
    err = translate(action, schema, exc)
    if err is None:
        raise exc
    raise err from exc
