"""Pull mode on the Scheduler: ``dequeue``, ``dequeue_by_id``, ``claim`` and ``get_lease(token)``.

For code that takes jobs itself instead of running handlers in a :class:`~pgqueue.Worker`
(osbuild's ``Dequeue``, kronos' ``ClaimJobs``): a consumer in another framework, a process
that must decide when to take work, or a worker in another language through the HTTP API.
The machinery is in :mod:`pgqueue.pull`; this mixin checks the arguments at the boundary
and translates database errors, as every public call does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterable, Sequence

from ._boundary import translated
from ._config import MAX_ATTEMPTS, check_name
from ._errors import ConfigError, NotPending, check_delay
from ._manage import check_id
from ._models import Job
from ._records import JobRecord
from ._registry import DEFAULT_QUEUE, Registry
from ._retry import ErrorFilter
from .pull import Consumer, Lease
from .pull.lease import DEFAULT_LEASE_S, check_lease, parse_token
from .pull.store import PullStore
from .store import Store

__all__ = ["MAX_CLAIM", "PullJobs"]

MAX_CLAIM = 1000  # claim(n)'s largest n: one statement's worth, as a worker's prefetch


def _names(kind: str, values: Sequence[str] | None) -> list[str] | None:
    """None, or a non-empty list of valid, distinct names (a bare string is refused)."""
    if values is None:
        return None
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise ConfigError(f"{kind}s must be None or a non-empty list of {kind} names, got {values!r}")
    for v in values:
        check_name(kind, v)
    return list(dict.fromkeys(values))


def _timeout(value: float | dt.timedelta | None) -> float | None:
    if value is None:
        return None
    return check_delay(value, "timeout")


def _no_handler(name: str) -> Callable[[Job], Awaitable[None]]:
    async def pulled_only(_job: Job) -> None:
        raise LookupError(
            f"job type {name!r} is declared for pull consumers (Scheduler.declare): "
            "no handler runs it in a Worker"
        )

    return pulled_only


class PullJobs:
    """Lease jobs to the caller instead of a Worker's handlers."""

    schema: str
    registry: Registry
    register: Callable[..., None]
    open: Callable[[], Awaitable[Store]]
    get_job: Callable[[int], Awaitable[JobRecord]]
    _consumer: Consumer | None

    def declare(
        self,
        name: str,
        *,
        queue: str = DEFAULT_QUEUE,
        retry: ErrorFilter | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        params: type | None = None,
        unique_for: float | dt.timedelta = 0.0,
        unique_kept_after: Iterable[str] = ("succeeded",),
    ) -> None:
        """Register a job type that pull consumers run (no handler in this process).

        ``schedule()`` accepts it like any registered type (its queue, params model and
        unique-key options apply), and a lease's ``fail()`` asks its ``retry`` filter and
        ``max_attempts``. A Worker that claims such a job fails it: point Workers at other
        queues.
        """
        self.register(
            name, _no_handler(name), queue=queue, retry=retry, max_attempts=max_attempts, params=params,
            unique_for=unique_for, unique_kept_after=unique_kept_after,
        )  # fmt: skip

    def _pull(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(self._pull_store, self.registry, self.schema)
        return self._consumer

    async def _pull_store(self) -> PullStore:
        store = await self.open()
        if not isinstance(store, PullStore):
            raise ConfigError(
                "the pull API (dequeue, claim, leases) needs a backend with leases (PostgreSQL or "
                f"Scheduler.in_memory()), not {type(store).__name__}"
            )
        return store

    async def dequeue(
        self,
        *,
        types: Sequence[str] | None = None,
        queues: Sequence[str] | None = None,
        timeout: float | dt.timedelta | None = None,  # noqa: ASYNC109 - the API's deadline, between claims
        lease: float | dt.timedelta = DEFAULT_LEASE_S,
    ) -> Lease | None:
        """Lease the next due job of ``types`` in ``queues``, waiting up to ``timeout`` for one.

        ``types``/``queues``: lists of names; None means any type / every queue with jobs.
        Waiting is woken by the notifications that wake workers (no polling beyond a
        re-check every few seconds); ``timeout=None`` waits until a job comes, ``0`` tries
        once. Returns ``None`` when the timeout passes. The lease lasts ``lease`` seconds
        (default 30) unless its heartbeats extend it; see :class:`~pgqueue.Lease`.
        """
        t, q = _names("type", types), _names("queue", queues)
        wait, lease_s = _timeout(timeout), check_lease(lease)
        async with translated("dequeue", self.schema):
            return await self._pull().dequeue(t, q, wait, lease_s)

    async def claim(
        self,
        n: int,
        *,
        types: Sequence[str] | None = None,
        queues: Sequence[str] | None = None,
        lease: float | dt.timedelta = DEFAULT_LEASE_S,
    ) -> list[Lease]:
        """Lease up to ``n`` (1 to 1,000) due jobs at once, in priority order; no waiting.

        One statement for the lot; finishing many leases at once (``asyncio.gather`` of
        their ``finish()``) writes them in one statement too.
        """
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CLAIM:
            raise ConfigError(f"n must be an integer from 1 to {MAX_CLAIM}, got {n!r}")
        t, q = _names("type", types), _names("queue", queues)
        lease_s = check_lease(lease)
        async with translated("claim", self.schema):
            return await self._pull().claim(n, t, q, lease_s)

    async def dequeue_by_id(self, job_id: int, *, lease: float | dt.timedelta = DEFAULT_LEASE_S) -> Lease:
        """Lease one given job now if it is waiting to run (due, or scheduled for later).

        Raises :class:`~pgqueue.NotPending` (with the job's ``state``) when it is running,
        suspended, waiting on dependencies or ended, and :class:`~pgqueue.JobNotFound` for
        an id no live or finished job has.
        """
        check_id(job_id)
        lease_s = check_lease(lease)
        async with translated("dequeue_by_id", self.schema):
            got, _row = await self._pull().claim_one(job_id, lease_s)
            if got is not None:
                return got
            record = await self.get_job(job_id)  # JobNotFound for an unknown id
            raise NotPending(job_id, record.state.value)

    async def get_lease(self, token: str, *, lease: float | dt.timedelta = DEFAULT_LEASE_S) -> Lease:
        """The lease a token names, to heartbeat, finish, fail or requeue it from anywhere.

        Raises :class:`~pgqueue.LeaseLost` when that lease no longer holds its job, and
        :class:`~pgqueue.ConfigError` for a malformed token. ``lease`` is what its
        heartbeats extend it by unless they say otherwise.
        """
        lease_s = check_lease(lease)
        parse_token(token)
        async with translated("get_lease", self.schema):
            return await self._pull().lease(token, lease_s)
