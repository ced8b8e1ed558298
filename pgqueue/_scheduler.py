"""The public :class:`Scheduler`: registers job types, schedules jobs, builds workers.

``schedule()`` is one statement: the INSERT and its ``pg_notify`` travel together, so
enqueueing costs one round trip. Given ``conn=`` (a connection inside the caller's
transaction) the job and its notification commit or roll back with that transaction:
PostgreSQL delivers notifications only on commit.

Every argument is checked before anything is written: an unknown type is a
``ValueError`` (:class:`UnknownJobTypeError`), params that cannot be encoded a
``TypeError`` (:class:`ParamsEncodeError`), a bad option a ``ValueError``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Self, TypeVar

import anyio
import asyncpg

from ._codec import encode
from ._config import (
    BUFFER_BATCHES,
    CONCURRENCY,
    DEAD_AFTER_S,
    FLUSH_AGE_S,
    FLUSH_MAX,
    HEARTBEAT_INTERVAL_S,
    POLL_INTERVAL_S,
    PREFETCH,
    WorkerConfig,
    check_name,
    check_schema,
)
from ._errors import ConfigError
from ._migrate import apply_migrations
from ._models import JobHandler, ShouldLogRun
from ._registry import DEFAULT_QUEUE, Registry
from ._retry import ErrorFilter
from ._store import Store, create_pool
from ._worker import Worker

__all__ = ["Scheduler"]

H = TypeVar("H", bound=JobHandler)
CHUNK_SIZE = 1000  # jobs per statement in schedule_many
_SMALLINT = (-32768, 32767)


def _check_run_at(run_at: dt.datetime | dt.timedelta | None) -> dt.datetime | None:
    if run_at is None:
        return None
    if isinstance(run_at, dt.timedelta):
        return dt.datetime.now(dt.UTC) + run_at
    if not isinstance(run_at, dt.datetime):
        raise ConfigError(f"run_at must be a timezone-aware datetime or a timedelta, got {run_at!r}")
    if run_at.tzinfo is None or run_at.utcoffset() is None:
        raise ConfigError(f"run_at must be timezone-aware (naive datetimes are ambiguous), got {run_at!r}")
    return run_at


def _check_priority(priority: int) -> int:
    if (
        not isinstance(priority, int)
        or isinstance(priority, bool)
        or not _SMALLINT[0] <= priority <= _SMALLINT[1]
    ):
        raise ConfigError(
            f"priority must be an integer in [{_SMALLINT[0]}, {_SMALLINT[1]}], got {priority!r}"
        )
    return priority


class Scheduler:
    """Registers job types and schedules jobs; the entry point of pgqueue.

    ::

        scheduler = Scheduler(dsn="postgresql://…")

        @scheduler.job("send_email", queue="emails", retry=LinearBackoff(3, 10))
        async def send_email(job: Job) -> None: ...

        async with scheduler:
            await scheduler.migrate()
            job_id = await scheduler.schedule("send_email", {"to": "a@example.com"})

    Give either ``dsn`` (the scheduler owns a pool) or ``pool`` (an asyncpg pool of the
    application, which the scheduler never closes).
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: asyncpg.Pool | None = None,
        schema: str = "pgqueue",
        pool_min_size: int = 1,
        pool_max_size: int = 10,
    ) -> None:
        if (dsn is None) == (pool is None):
            raise ConfigError("give exactly one of dsn= or pool=")
        if dsn is not None and (not isinstance(dsn, str) or not dsn):
            raise ConfigError(f"dsn must be a non-empty string, got {dsn!r}")
        check_schema(schema)
        if not 1 <= pool_min_size <= pool_max_size:
            raise ConfigError(
                f"need 1 <= pool_min_size <= pool_max_size, got {pool_min_size}, {pool_max_size}"
            )
        self.schema = schema
        self._dsn = dsn
        self._pool = pool
        self._owns_pool = pool is None
        self._pool_sizes = (pool_min_size, pool_max_size)
        self._store: Store | None = None
        self._open_lock = anyio.Lock()
        self.registry = Registry()

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> Store:
        """Open the pool (idempotent); every method calls it, so explicit calls are optional."""
        if self._store is not None:
            return self._store
        async with self._open_lock:
            if self._store is None:
                if self._pool is None:
                    assert self._dsn is not None  # noqa: S101 - checked in __init__
                    self._pool = await create_pool(
                        self._dsn, min_size=self._pool_sizes[0], max_size=self._pool_sizes[1]
                    )
                self._store = Store(self._pool, self.schema, dsn=self._dsn)
            return self._store

    async def close(self) -> None:
        """Close the pool if the scheduler created it."""
        store, self._store = self._store, None
        if store is not None and self._owns_pool:
            await store.pool.close()
            self._pool = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def migrate(self) -> list[int]:
        """Apply pending migrations (idempotent, safe to run concurrently); returns versions applied."""
        return await apply_migrations(await self.open())

    # -- registration ---------------------------------------------------------------------

    def job(
        self, name: str, *, queue: str = DEFAULT_QUEUE, retry: ErrorFilter | None = None
    ) -> Callable[[H], H]:
        """Decorator registering ``fn`` as the handler of job type ``name``."""

        def register(fn: H) -> H:
            self.registry.add(name, fn, queue=queue, retry=retry)
            return fn

        return register

    def register(
        self, name: str, handler: JobHandler, *, queue: str = DEFAULT_QUEUE, retry: ErrorFilter | None = None
    ) -> None:
        """Register a handler without the decorator."""
        self.registry.add(name, handler, queue=queue, retry=retry)

    # -- scheduling -----------------------------------------------------------------------

    async def schedule(
        self,
        type: str,  # noqa: A002 - the job's type name, as in the issue's API
        params: object = None,
        *,
        run_at: dt.datetime | dt.timedelta | None = None,
        queue: str | None = None,
        priority: int = 0,
        conn: asyncpg.Connection | None = None,
    ) -> int:
        """Schedule one job and return its id.

        ``run_at``: an aware datetime, or a timedelta from now; None runs it now. ``queue``
        overrides the type's default. ``priority``: lower runs first. ``conn``: run inside
        that connection's current transaction.
        """
        jt = self.registry.require(type)
        q = jt.queue if queue is None else queue
        check_name("queue", q)
        at = _check_run_at(run_at)
        prio = _check_priority(priority)
        encoded = encode(params)
        store = await self.open()
        return await store.job_insert(conn, queue=q, type_=type, params=encoded, run_at=at, priority=prio)

    async def schedule_many(
        self,
        type: str,  # noqa: A002
        params: Iterable[object],
        *,
        run_at: dt.datetime | dt.timedelta | None = None,
        queue: str | None = None,
        priority: int = 0,
        conn: asyncpg.Connection | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> list[int]:
        """Schedule many jobs of one type; returns their ids in input order.

        One statement (and one notification) per ``chunk_size`` jobs. Every params value
        is encoded before the first insert, so a bad one writes nothing. Without ``conn``
        the chunks commit separately; pass ``conn`` inside a transaction for all-or-nothing.
        """
        jt = self.registry.require(type)
        q = jt.queue if queue is None else queue
        check_name("queue", q)
        at = _check_run_at(run_at)
        prio = _check_priority(priority)
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ConfigError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
        if isinstance(params, str | bytes | dict):
            raise ConfigError("params must be an iterable of params values, one per job (not a single value)")
        encoded = [encode(p, what=f"params[{i}]") for i, p in enumerate(params)]
        if not encoded:
            return []
        store = await self.open()
        ids: list[int] = []
        for start in range(0, len(encoded), chunk_size):
            chunk = encoded[start : start + chunk_size]
            ids += await store.job_insert_many(
                conn, queue=q, type_=type, params=chunk, run_at=at, priority=prio
            )
        return ids

    # -- workers --------------------------------------------------------------------------

    def worker(
        self,
        queues: Iterable[str] | None = None,
        *,
        concurrency: int = CONCURRENCY,
        prefetch: int | None = None,
        poll_interval: float = POLL_INTERVAL_S,
        flush_max: int = FLUSH_MAX,
        flush_age: float = FLUSH_AGE_S,
        buffer_max: int | None = None,
        heartbeat_interval: float = HEARTBEAT_INTERVAL_S,
        dead_after: float = DEAD_AFTER_S,
        should_log_run: ShouldLogRun | None = None,
    ) -> Worker:
        """Build a worker for ``queues`` (default: the queues of all registered types).

        ``prefetch`` defaults to max(500, concurrency); ``buffer_max`` to 4 × ``flush_max``.
        Run it with ``await worker.run()`` (until cancelled or ``await worker.shutdown()``).
        """
        if isinstance(queues, str):
            raise ConfigError(f"queues must be a list of queue names, got the string {queues!r}")
        qs = tuple(queues) if queues is not None else self.registry.queues()
        if not qs:
            raise ConfigError("no queues: register a job type first or pass queues=[...]")
        config = WorkerConfig(
            queues=qs,
            concurrency=concurrency,
            prefetch=max(PREFETCH, concurrency) if prefetch is None else prefetch,
            poll_interval=poll_interval,
            flush_max=flush_max,
            flush_age=flush_age,
            buffer_max=flush_max * BUFFER_BATCHES if buffer_max is None else buffer_max,
            heartbeat_interval=heartbeat_interval,
            dead_after=dead_after,
            should_log_run=should_log_run,
        )
        return Worker(open_store=self.open, registry=self.registry, config=config)
