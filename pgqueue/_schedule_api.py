"""The scheduling methods of :class:`~pgqueue.Scheduler`: schedule() and schedule_many().

A mixin of its own, as the management API is (``_management_api.py``): the Scheduler
module keeps what a scheduler is (its backend, registration, workers), this one the
writes that enqueue jobs. What they check before writing is in ``_enqueue.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from ._boundary import translate, translated
from ._config import check_name
from ._enqueue import JobId, Target, check_depends_on, check_tenant, check_tenants, prepare
from ._errors import ConfigError, InvalidStateError, JobNotFound
from ._registry import Registry
from ._tracing import Tracing
from .store import CallerConnection, Store

if TYPE_CHECKING:  # pgqueue.metrics imports prometheus-client, an optional extra
    from .metrics import Metrics

__all__ = ["CHUNK_SIZE", "JobScheduling"]

CHUNK_SIZE = 1000  # jobs per statement in schedule_many


class JobScheduling:
    """Schedule one job or many, inside the caller's transaction when given one."""

    schema: str
    registry: Registry
    metrics: Metrics | None
    tracing: Tracing | None
    _store: Store | None
    open: Callable[[], Awaitable[Store]]

    async def schedule(
        self,
        type: str,  # noqa: A002 - the job's type name, as in the issue's API
        params: object = None,
        *,
        run_at: dt.datetime | dt.timedelta | None = None,
        queue: str | None = None,
        priority: int = 0,
        timeout: float | None = None,  # noqa: ASYNC109 - the job's run-time limit, not this call's
        conn: CallerConnection | None = None,
        unique_key: str | None = None,
        depends_on: Iterable[int] | None = None,
        tenant: str | None = None,
    ) -> JobId:
        """Schedule one job and return its id (an ``int``; ``.inserted`` says if this call made it).

        ``run_at``: an aware datetime, or a timedelta from now; None runs it now. ``queue``
        overrides the type's default. ``priority``: lower runs first. ``timeout``: this
        job's run-time limit in seconds (default: the type's). ``conn``: run inside that
        connection's current transaction. ``unique_key``: return the job that holds this key
        instead of inserting another (see the README). ``depends_on``: ids of jobs that must
        succeed first; the job is ``waiting`` until then, and cancelled if one does not.
        ``tenant``: the job's owner (a non-empty string, at most 200 characters, no NUL), for
        listing, stats and per-tenant limits; ``job.tenant`` in the handler.
        """
        t = prepare(self.registry, type, queue, run_at, priority, timeout)
        if tenant is not None:
            t = t._replace(jobs=t.jobs._replace(tenant=check_tenant(tenant)))
        encoded = t.encode(params)
        if unique_key is not None:
            check_name("unique_key", unique_key)
        deps = check_depends_on(depends_on)
        if deps and unique_key is not None:
            raise ConfigError("unique_key and depends_on cannot be combined in one schedule() call")
        if self.tracing is not None:
            with self.tracing.scheduling(type, t.jobs.queue) as span:
                t = t._replace(jobs=t.jobs._replace(trace=span.traceparent))
                job_id = await self._insert(conn, t, encoded, unique_key, deps)
                span.scheduled([job_id])
        else:
            job_id = await self._insert(conn, t, encoded, unique_key, deps)
        if self.metrics is not None and job_id.inserted:
            self.metrics.scheduled(t.jobs.type, t.jobs.queue, 1)
        return job_id

    async def _insert(
        self,
        conn: CallerConnection | None,
        t: Target,
        encoded: str,
        unique_key: str | None,
        deps: list[int],
    ) -> JobId:
        """schedule()'s write: one job, plain, unique or dependent."""
        try:  # not translated(): schedule() is on the pickup-latency path, and a context manager costs
            store = self._store or await self.open()
            if deps:
                job_id = JobId(await self._insert_dependent(store, conn, t, encoded, deps))
            elif unique_key is None:
                job_id = JobId(await store.job_insert(conn, t.jobs, encoded))  # inserted, the default
            else:
                found, inserted = await store.job_insert_unique(
                    conn, t.jobs, encoded, key=unique_key, keep_s=t.keep_s, keep_after=t.keep_after
                )
                job_id = JobId.of(found, inserted=inserted)
        except Exception as exc:
            err = translate("schedule", self.schema, exc)
            if err is not None:
                raise err from exc
            raise
        return job_id

    @staticmethod
    async def _insert_dependent(
        store: Store, conn: CallerConnection | None, t: Target, encoded: str, deps: list[int]
    ) -> int:
        job_id, blocked = await store.job_insert_dependent(conn, t.jobs, encoded, deps)
        if job_id is not None:
            return job_id
        dep, state = min(blocked.items())
        if state == "gone":
            raise JobNotFound(
                f"dependency {dep} not found: no live job has this id and no run of it was logged"
            )
        raise InvalidStateError(dep, state, "depend on")

    async def schedule_many(
        self,
        type: str,  # noqa: A002
        params: Iterable[object],
        *,
        run_at: dt.datetime | dt.timedelta | None = None,
        queue: str | None = None,
        priority: int = 0,
        timeout: float | None = None,  # noqa: ASYNC109 - the job's run-time limit, not this call's
        conn: CallerConnection | None = None,
        chunk_size: int = CHUNK_SIZE,
        tenant: str | Iterable[str | None] | None = None,
    ) -> list[int]:
        """Schedule many jobs of one type; returns their ids in input order.

        One statement (and one notification) per ``chunk_size`` jobs. Every params value
        is encoded before the first insert, so a bad one writes nothing. Without ``conn``
        the chunks commit separately; pass ``conn`` inside a transaction for all-or-nothing.
        ``tenant``: one tenant for every job, or one (or None) per params value, in order.
        """
        t = prepare(self.registry, type, queue, run_at, priority, timeout)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ConfigError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
        if isinstance(params, str | bytes | dict):
            raise ConfigError("params must be an iterable of params values, one per job (not a single value)")
        encoded = [t.encode(p, what=f"params[{i}]") for i, p in enumerate(params)]
        tenants = check_tenants(tenant, len(encoded))
        if not encoded:
            return []
        if self.tracing is not None:
            with self.tracing.scheduling(type, t.jobs.queue) as span:
                t = t._replace(jobs=t.jobs._replace(trace=span.traceparent))
                ids = await self._insert_many(conn, t, encoded, chunk_size, tenants)
                span.scheduled(ids)
            return ids
        return await self._insert_many(conn, t, encoded, chunk_size, tenants)

    async def _insert_many(
        self,
        conn: CallerConnection | None,
        t: Target,
        encoded: list[str],
        chunk_size: int,
        tenants: list[str | None] | None,
    ) -> list[int]:
        """schedule_many()'s writes: one statement per chunk."""
        ids: list[int] = []
        async with translated("schedule_many", self.schema):
            store = await self.open()
            for start in range(0, len(encoded), chunk_size):
                end = start + chunk_size
                part = None if tenants is None else tenants[start:end]
                chunk = await store.job_insert_many(conn, t.jobs, encoded[start:end], part)
                ids += chunk
                if self.metrics is not None:  # per chunk: each one commits on its own
                    self.metrics.scheduled(t.jobs.type, t.jobs.queue, len(chunk))
        return ids
