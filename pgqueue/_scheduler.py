"""The public :class:`Scheduler`: registers job types, schedules jobs, builds workers.

``schedule()`` is one statement: the INSERT and its ``pg_notify`` travel together, so
enqueueing costs one round trip. Given ``conn=`` (a connection inside the caller's
transaction) the job and its notification commit or roll back with that transaction:
PostgreSQL delivers notifications only on commit.

Every argument is checked before anything is written: an unknown type is a
``ValueError`` (:class:`UnknownJobTypeError`), params that cannot be encoded a
``TypeError`` (:class:`ParamsEncodeError`), a bad option a ``ValueError``. When the
database cannot be reached the call raises :class:`DatabaseUnavailableError` (a
``ConnectionError``): the job was not stored.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Self, TypeVar

import anyio

from ._boundary import translated
from ._config import (
    MAX_ATTEMPTS,
    POOL_MAX_SIZE,
    POOL_MIN_SIZE,
    SCHEMA,
    SchedulerConfig,
    WorkerConfig,
)
from ._context import CURRENT_SCHEDULER, reset_scheduler
from ._dsn import on_this_machine
from ._errors import (
    ConfigError,
)
from ._limits_api import QueueLimits
from ._manage import Management
from ._management_api import JobManagement
from ._models import JobHandler
from ._periodic_api import PeriodicScheduling
from ._pull_api import PullJobs
from ._records import JobTypeInfo
from ._registry import DEFAULT_QUEUE, Registry
from ._retention_api import RunRetention
from ._retry import ErrorFilter
from ._schedule_api import JobScheduling
from ._tracing import Tracing
from ._waiting import Waiters
from .pull import Consumer
from .pull.store import PullStore
from .store import Store
from .store.memory import MemoryClock, MemoryStore
from .store.postgres import Pool, PostgresStore, close_pool, create_pool
from .worker import Worker

if TYPE_CHECKING:  # pgqueue.metrics imports prometheus-client, an optional extra
    from .metrics import Metrics

__all__ = ["Scheduler"]

H = TypeVar("H", bound=JobHandler)
WAIT_POLL_S = 0.5  # wait()'s poll interval with pgbouncer=True


class Scheduler(JobScheduling, JobManagement, QueueLimits, PeriodicScheduling, RunRetention, PullJobs):
    """Registers job types and schedules jobs; the entry point of pgqueue.

    ::

        scheduler = Scheduler(dsn="postgresql://…")

        @scheduler.job("send_email", queue="emails", retry=LinearBackoff(3, 10))
        async def send_email(job: Job) -> None: ...

        async with scheduler:
            await scheduler.migrate()
            job_id = await scheduler.schedule("send_email", {"to": "a@example.com"})

    Give either ``dsn`` (the scheduler owns a pool) or ``pool`` (an asyncpg pool of the
    application, which the scheduler never closes). The scheduler's own pool connects on
    first use, so it can be created while the database is down.

    ``pgbouncer=True`` is for PgBouncer (or Supavisor) in transaction mode: no statement
    cache (``statement_cache_size=0``) and workers that poll instead of LISTEN. Give such
    workers a short ``poll_interval``; cancel() then reaches running jobs at their worker's
    next heartbeat instead of at once.

    ``metrics``: a :class:`pgqueue.metrics.Metrics` (the ``pgqueue[metrics]`` extra) that
    counts the jobs this scheduler schedules; the workers it builds record into it too,
    unless given ``metrics=`` of their own.

    ``tracing``: a :class:`pgqueue.otel.OpenTelemetry` (the ``pgqueue[otel]`` extra): a span
    around each schedule call, whose trace the runs of the types registered afterwards
    continue.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: Pool | None = None,
        schema: str = SCHEMA,
        pool_min_size: int = POOL_MIN_SIZE,
        pool_max_size: int = POOL_MAX_SIZE,
        pgbouncer: bool = False,
        backend: Store | None = None,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        if sum(x is not None for x in (dsn, pool, backend)) != 1:
            raise ConfigError("give exactly one of dsn=, pool= or backend=")
        if dsn is not None and (not isinstance(dsn, str) or not dsn):
            raise ConfigError(f"dsn must be a non-empty string, got {dsn!r}")
        self.config = SchedulerConfig(
            schema=schema, pool_min_size=pool_min_size, pool_max_size=pool_max_size, pgbouncer=pgbouncer
        )
        self.pgbouncer = pgbouncer
        self.schema = schema
        self.metrics = metrics
        """Where scheduled jobs are counted (and the default of this scheduler's workers)."""
        self.tracing = tracing
        """Spans around schedule calls and the runs of the types registered here (pgqueue.otel)."""
        self._dsn = dsn
        self._pool = pool
        self._owns_pool = pool is None
        # The store every call uses: PostgreSQL's once opened, or the backend given.
        self._store: Store | None = backend
        self._backend = backend
        self._delegate: Scheduler | None = None  # see using()
        if backend is not None:
            self.schema = backend.schema
        self._open_lock = anyio.Lock()
        # current_scheduler() tokens of the `async with` blocks in progress, innermost last.
        self._context_tokens: list[Token[Scheduler]] = []
        self.registry = Registry()
        self._manage = Management(self.open, schema, self.registry.suspendable)
        # No LISTEN through a transaction-mode pooler: waits poll there.
        self._waiters = Waiters(self.open, self.get_job, schema, WAIT_POLL_S if pgbouncer else None)
        self._consumer: Consumer | None = None  # the pull API's, created by its first call

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> Store:
        """Open the pool (idempotent); every method calls it, so explicit calls are optional."""
        return await self._open()

    @classmethod
    def in_memory(cls, clock: MemoryClock | None = None, *, tracing: Tracing | None = None) -> Scheduler:
        """A scheduler on a fresh in-memory backend, for tests: no server, no network.

        Same API; what the backend cannot honour (other processes, crash rescue,
        ``conn=`` transactions) is listed in :mod:`pgqueue.store.memory`. ``clock``: the
        backend's clock, which :func:`pgqueue.testing.advance` moves forward.
        """
        return cls(backend=MemoryStore(clock), tracing=tracing)

    @contextlib.contextmanager
    def using(self, other: Scheduler) -> Iterator[Self]:
        """Send this scheduler's calls to ``other``'s backend for the block (tests).

        An application's own scheduler, with the job types it registered, then schedules,
        manages and builds workers on ``other``'s store (an in-memory one, or a test
        schema); its own pool is left as it was. The pytest plugin's fixtures use it.
        Everything happens inside the block: a worker built there opens its store when it
        runs, and ``close()`` belongs to ``other`` (closing this scheduler inside the block
        closes ``other``'s store).
        """
        saved = self._store, self._delegate, self.schema
        self._store, self._delegate, self.schema = other._store, other, other.schema
        try:
            yield self
        finally:
            self._store, self._delegate, self.schema = saved

    async def _open(self) -> Store:
        if self._store is not None:
            return self._store
        if self._delegate is not None:  # inside using(): the other scheduler opens its store
            self._store = await self._delegate._open()  # noqa: SLF001 - same class
            return self._store
        async with self._open_lock:
            if self._store is None:
                if self._pool is None:
                    assert self._dsn is not None  # noqa: S101 - checked in __init__
                    cfg = self.config
                    self._pool = await create_pool(
                        self._dsn,
                        min_size=cfg.pool_min_size,
                        max_size=cfg.pool_max_size,
                        pgbouncer=cfg.pgbouncer,
                    )
                self._store = PostgresStore(self._pool, self.schema, dsn=self._dsn, lane=self._owns_pool)
            return self._store

    async def close(self) -> None:
        """Close the pool if the scheduler created it (within ``POOL_CLOSE_S``, see ``close_pool``)."""
        await self._waiters.close(scheduler_closing=True)
        consumer, self._consumer = self._consumer, None  # a reopened scheduler pulls afresh
        if consumer is not None:
            await consumer.close(self._store if isinstance(self._store, PullStore) else None)
        if self._backend is not None:
            return  # a backend given is the caller's: its jobs stay for the test to read
        store, self._store = self._store, None
        if store is not None:
            await store.close()
            if self._owns_pool and self._pool is not None:
                await close_pool(self._pool)
                self._pool = None

    async def __aenter__(self) -> Self:
        """Open the scheduler and make it :func:`pgqueue.current_scheduler` for the block."""
        await self.open()
        self._context_tokens.append(CURRENT_SCHEDULER.set(self))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._context_tokens:
            reset_scheduler(self._context_tokens.pop())
        await self.close()

    async def migrate(self) -> list[int]:
        """Apply pending migrations (idempotent, safe to run concurrently); returns versions applied."""
        async with translated("migrate", self.schema):
            return await (await self.open()).migrate()

    async def migration_sql(self) -> str:
        """The SQL :meth:`migrate` would run now, as one script to review or apply with psql.

        Empty when the schema is up to date; a schema newer than this pgqueue raises
        :class:`SchemaTooNewError`, as :meth:`migrate` does.
        """
        async with translated("migration_sql", self.schema):
            return await (await self.open()).migration_pending_sql()

    # -- registration ---------------------------------------------------------------------

    def job(
        self,
        name: str,
        *,
        queue: str = DEFAULT_QUEUE,
        retry: ErrorFilter | None = None,
        timeout: float | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        params: type | None = None,
        unique_for: float | dt.timedelta = 0.0,
        unique_kept_after: Iterable[str] = ("succeeded",),
        suspendable: bool = False,
    ) -> Callable[[H], H]:
        """Decorator registering ``fn`` as the handler of job type ``name``.

        ``retry``: the error filter deciding retries after a failed run (None: none).
        ``timeout``: seconds a run may take before it is interrupted and counted as a failed
        run (outcome ``timeout``; the filter decides whether it runs again).
        ``max_attempts``: runs a job gets at most, runs cut short by a dead worker included,
        whatever the filter says. ``params``: a pydantic model or a dataclass; params are
        validated against it at schedule time and the handler's ``job.params`` is the model.
        ``unique_for``: how long a job's ``unique_key`` stays held after it ends in one of
        ``unique_kept_after`` (end states: ``succeeded``, ``failed``, ``cancelled``; default
        success only); a live job always holds its key.
        ``suspendable``: suspend() may ask its running jobs to stop at a checkpoint.
        """

        def register(fn: H) -> H:
            self.register(
                name, fn, queue=queue, retry=retry, timeout=timeout, max_attempts=max_attempts,
                params=params, unique_for=unique_for, unique_kept_after=unique_kept_after,
                suspendable=suspendable,
            )  # fmt: skip
            return fn

        return register

    def register(
        self,
        name: str,
        handler: JobHandler,
        *,
        queue: str = DEFAULT_QUEUE,
        retry: ErrorFilter | None = None,
        timeout: float | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        params: type | None = None,
        unique_for: float | dt.timedelta = 0.0,
        unique_kept_after: Iterable[str] = ("succeeded",),
        suspendable: bool = False,
    ) -> None:
        """Register a handler without the decorator (same options as :meth:`job`)."""
        if self.tracing is not None and callable(handler):
            handler = self.tracing.wrap(name, handler)
        self.registry.add(
            name, handler, queue=queue, retry=retry, timeout=timeout, max_attempts=max_attempts,
            params=params, unique_for=unique_for, unique_kept_after=unique_kept_after,
            suspendable=suspendable,
        )  # fmt: skip

    def job_types(self) -> list[JobTypeInfo]:
        """The registered job types by name, with their options and params JSON Schema."""
        return self.registry.describe()

    # -- workers --------------------------------------------------------------------------

    def worker(self, queues: Iterable[str] | None = None, **overrides: object) -> Worker:
        """Build a worker for ``queues`` (default: the queues of all registered types).

        ``overrides`` are :class:`~pgqueue._config.WorkerConfig` options by name
        (``concurrency=20``, ``poll_interval=1.0``…); None or an absent name takes the
        default, derived where the README says (``prefetch`` from ``concurrency``, and with
        ``pgbouncer=True`` no LISTEN and no vacuum). An unknown name or a bad value raises
        :class:`ConfigError`. Run it with ``await worker.run()`` (until cancelled or
        ``await worker.shutdown()``).
        """
        if isinstance(queues, str):
            raise ConfigError(f"queues must be a list of queue names, got the string {queues!r}")
        qs = tuple(queues) if queues is not None else self.registry.queues()
        if not qs:
            raise ConfigError("no queues: register a job type first or pass queues=[...]")
        if overrides.get("metrics") is None:  # None is the default, as for every option: the scheduler's
            overrides["metrics"] = self.metrics
        local = self._dsn is not None and on_this_machine(self._dsn)
        config = WorkerConfig.build(qs, self.pgbouncer, local, **overrides)
        return Worker(open_store=self._open, registry=self.registry, config=config, scheduler=self)
