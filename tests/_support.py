"""Helpers shared by the tests: run a worker until an event, read the run log."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import anyio
import asyncpg

from pgqueue import Scheduler, Worker
from pgqueue._config import WorkerConfig
from pgqueue._models import ROW_ID, Row
from pgqueue._signals import Signal
from pgqueue.store import Held, WorkerBackend
from pgqueue.store.postgres import PostgresStore
from pgqueue.store.postgres.queries import quote_ident

ROOT_DIR = str(Path(__file__).resolve().parent.parent)
WAIT_S = 30.0  # generous ceiling for "this must happen": a hang fails, slowness does not
# Worker options with no timer claims for the length of a test: what it runs, a
# notification or a release made it claim.
QUIET: dict[str, Any] = {"poll_interval": 3600.0, "heartbeat_interval": 3600.0, "dead_after": 3 * 3600.0}


class Counter:
    """Counts handler calls and fires an event at a target."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.calls: list[Any] = []
        self.done = anyio.Event()

    def hit(self, value: Any) -> None:
        self.calls.append(value)
        if len(self.calls) >= self.target:
            self.done.set()


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    """Run ``worker`` for the body of the block, then shut it down gracefully."""
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        try:
            yield worker
        finally:
            with anyio.fail_after(WAIT_S):
                await worker.shutdown()


async def wait(event: anyio.Event, timeout: float = WAIT_S) -> None:
    with anyio.fail_after(timeout):
        await event.wait()


async def runs(db: asyncpg.Connection, schema: str, job_id: int | None = None) -> list[asyncpg.Record]:
    where = "" if job_id is None else "WHERE job_id = $1"
    args = [] if job_id is None else [job_id]
    return await db.fetch(f'SELECT * FROM "{schema}".job_runs {where} ORDER BY job_id, attempt', *args)


async def hot_count(db: asyncpg.Connection, schema: str) -> int:
    return int(await db.fetchval(f'SELECT count(*) FROM "{schema}".jobs'))


async def until(check: Callable[[], Awaitable[bool] | bool], timeout: float = WAIT_S) -> None:
    """Wait until ``check()`` holds, polling every 10 ms; fail after ``timeout`` seconds.

    For state that has no event to wait on: rows written by another process or connection,
    counters of a running worker. The deadline makes a hang fail; it is not a timing assertion.
    """
    with anyio.fail_after(timeout):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await anyio.sleep(0.01)


async def hot_empty(db: asyncpg.Connection, schema: str) -> bool:
    return await hot_count(db, schema) == 0


async def pg_store(scheduler: Scheduler) -> PostgresStore:
    """The scheduler's store as the PostgreSQL class (its pool and queries are for tests)."""
    store = await scheduler.open()
    assert isinstance(store, PostgresStore)
    return store


class StoreWrapper:
    """A real store with some methods replaced: fault tests override one method on an
    instance and hand the wrapper to a Worker, instead of patching the store's class."""

    def __init__(self, inner: PostgresStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def override(self, name: str, method: Callable[..., Any]) -> None:
        """Answer ``name`` with ``method`` instead of the real store's."""
        setattr(self, name, method)


class ClaimSpy(StoreWrapper):
    """A store whose claims are noted in order: ("search" or "by id", the ids each took).

    ``hold_searches``: when set to an event, searches wait for it before they run.
    """

    def __init__(self, inner: PostgresStore) -> None:
        super().__init__(inner)
        self.claims: list[tuple[str, list[int]]] = []
        self.hold_searches: anyio.Event | None = None

    async def job_claim_many(
        self, queues: Sequence[str], limit: int, worker_id: int, held: Held | None = None
    ) -> list[Row]:
        if self.hold_searches is not None:
            await self.hold_searches.wait()
        rows = await self.inner.job_claim_many(queues, limit, worker_id, held)
        self.claims.append(("search", [r[ROW_ID] for r in rows]))
        return rows

    async def job_claim_announced(
        self, ids: Sequence[int], queues: Sequence[str], limit: int, worker_id: int, held: Held | None = None
    ) -> list[Row]:
        rows = await self.inner.job_claim_announced(ids, queues, limit, worker_id, held)
        self.claims.append(("by id", [r[ROW_ID] for r in rows]))
        return rows


def worker_on(scheduler: Scheduler, store: object, **overrides: object) -> Worker:
    """A worker of ``scheduler``'s job types that runs on ``store`` (a wrapper, usually)."""
    config = WorkerConfig.build(scheduler.registry.queues(), scheduler.pgbouncer, **overrides)

    async def open_store() -> WorkerBackend:
        return cast("WorkerBackend", store)

    return Worker(open_store=open_store, registry=scheduler.registry, config=config)


async def claim_records(
    store: PostgresStore, queues: list[str], limit: int, worker_id: int
) -> list[asyncpg.Record]:
    """``job_claim_many`` with its rows typed as what they are on PostgreSQL: records."""
    return cast("list[asyncpg.Record]", await store.job_claim_many(queues, limit, worker_id))


async def fired(signal: Signal, count: int, timeout: float = WAIT_S) -> None:
    """Wait until ``signal`` has fired ``count`` times in all (read ``signal.count`` before acting)."""
    with anyio.fail_after(timeout):
        await signal.wait_count(count)


async def drop_schema(dsn: str, schema: str) -> None:
    """Drop a test's schema and everything in it (any name: it is quoted)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
    finally:
        await conn.close()


async def blocked_by(db: asyncpg.Connection, pid: int) -> None:
    """Wait until some backend waits for a lock that backend ``pid`` holds.

    Each look clears the statistics snapshot, as :func:`lock_wait` does: ``db`` may be
    inside a transaction, where pg_stat_activity is read once.
    """
    query = "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))"

    async def waiting() -> bool:
        await db.execute("SELECT pg_stat_clear_snapshot()")
        return bool(await db.fetchval(query, pid))

    await until(waiting)


async def lock_wait(db: asyncpg.Connection) -> None:
    """Wait until another backend of this database waits for a row lock (deadlock tests).

    Each look clears the statistics snapshot: inside a transaction pg_stat_activity is read
    once, at its first use, and would never show a wait that began after it.
    """

    async def waiting() -> bool:
        await db.execute("SELECT pg_stat_clear_snapshot()")
        count = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid() AND datname = current_database()"
        )
        return bool(count)

    await until(waiting)
