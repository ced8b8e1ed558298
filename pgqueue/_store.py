"""The only asyncpg user: one typed coroutine per named query in ``queries.sql``.

Stages above never see SQL or a connection; they call these methods. The store works on
an asyncpg pool (ours or the application's); ``conn=`` runs a statement on a caller's
connection instead, inside the caller's transaction.

Our own pool is created with a no-op ``reset``: asyncpg's default reset runs
``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on every release,
one extra round trip per ``schedule()``. Our pooled connections never keep session state
(LISTEN has its own connection), so there is nothing to reset.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import socket
from collections.abc import Sequence
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ._sql import QUERIES, Queries, quote_ident

__all__ = ["RUN_COLUMNS", "FinalizeResult", "FlushBatch", "Store", "create_pool"]

# Column order of the COPY into job_runs; the flusher builds records in this order.
RUN_COLUMNS = (
    "job_id",
    "worker_id",
    "inserted_at",
    "run_at",
    "started_at",
    "finished_at",
    "retry_at",
    "attempt",
    "priority",
    "queue",
    "type",
    "outcome",
    "error",
    "params",
    "result",
)
RUN_RETRY_AT = RUN_COLUMNS.index("retry_at")

Executor = asyncpg.Pool | asyncpg.Connection
ListenConn = asyncpg.Connection | PoolConnectionProxy  # a pool connection when we only have a pool


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """Pool reset hook: our pooled connections hold no session state (see module doc)."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """Open a pool for pgqueue's own use."""
    pool: asyncpg.Pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, reset=_no_reset)
    return pool


@dataclasses.dataclass(slots=True)
class FlushBatch:
    """One flush: the jobs that ended, the jobs put back, and their run-log rows."""

    ended_ids: list[int] = dataclasses.field(default_factory=list)
    ended_attempts: list[int] = dataclasses.field(default_factory=list)
    back_ids: list[int] = dataclasses.field(default_factory=list)
    back_attempts: list[int] = dataclasses.field(default_factory=list)
    back_at: list[dt.datetime | None] = dataclasses.field(default_factory=list)
    back_delay: list[float] = dataclasses.field(default_factory=list)
    back_error_inc: list[int] = dataclasses.field(default_factory=list)
    back_error: list[str | None] = dataclasses.field(default_factory=list)
    runs: list[list[Any]] = dataclasses.field(default_factory=list)
    """Rows in :data:`RUN_COLUMNS` order; ``retry_at`` is filled in from the database."""


@dataclasses.dataclass(frozen=True, slots=True)
class FinalizeResult:
    """What a flush changed: only runs of jobs this worker still owned were recorded."""

    ended: frozenset[int]
    put_back: dict[int, dt.datetime]
    runs_logged: int


class Store:
    """Typed access to pgqueue's tables in one schema."""

    def __init__(self, pool: asyncpg.Pool, schema: str, *, dsn: str | None = None) -> None:
        self.pool = pool
        self.schema = schema
        self.dsn = dsn
        self.channel = f"{schema}_events"
        self.q: Queries = QUERIES.for_schema(schema)

    # -- migrations and version ----------------------------------------------------------

    async def migration_apply(self, migrations: Sequence[tuple[int, str, str]], known_max: int) -> list[int]:
        """Apply the missing migrations in one transaction under an advisory lock.

        Returns the versions applied. Raises ``LookupError`` with the database's version
        when it is newer than ``known_max`` (the caller turns it into a SchemaTooNewError).
        """
        q = self.q
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(q.migration_lock, f"pgqueue.migrate:{self.schema}")
            await conn.execute(q.migration_schema_create)
            await conn.execute(q.migration_version_table_create)
            applied = {r[0] for r in await conn.fetch(q.migration_versions_get)}
            if applied and max(applied) > known_max:
                raise LookupError(max(applied))
            done: list[int] = []
            for version, name, sql in migrations:
                if version in applied:
                    continue
                await conn.fetchval(q.migration_search_path_set, quote_ident(self.schema))
                await conn.execute(sql)
                await conn.execute(q.migration_version_insert, version, name)
                done.append(version)
            return done

    async def schema_version(self) -> int | None:
        """The highest applied migration, or None when the schema was never migrated."""
        async with self.pool.acquire() as conn:
            table = f"{quote_ident(self.schema)}.schema_version"
            if not await conn.fetchval(self.q.schema_version_table_exists, table):
                return None
            v: int = await conn.fetchval(self.q.schema_version_max)
            return v

    # -- scheduling ------------------------------------------------------------------------

    async def job_insert(
        self,
        conn: asyncpg.Connection | None,
        *,
        queue: str,
        type_: str,
        params: str,
        run_at: dt.datetime | None,
        priority: int,
    ) -> int:
        """Insert one job and notify its queue, in one statement."""
        ex: Executor = self.pool if conn is None else conn
        job_id: int = await ex.fetchval(
            self.q.job_insert, queue, type_, params, run_at, priority, self.channel
        )
        return job_id

    async def job_insert_many(
        self,
        conn: asyncpg.Connection | None,
        *,
        queue: str,
        type_: str,
        params: list[str],
        run_at: dt.datetime | None,
        priority: int,
    ) -> list[int]:
        """Insert jobs of one type and queue, one notification for the lot."""
        ex: Executor = self.pool if conn is None else conn
        row = await ex.fetchrow(self.q.job_insert_many, queue, type_, params, run_at, priority, self.channel)
        assert row is not None  # noqa: S101 - an aggregate always returns a row
        ids: list[int] = row[0] or []
        return ids

    # -- the worker's hot path ----------------------------------------------------------

    async def job_claim_many(self, queues: Sequence[str], limit: int, worker_id: int) -> list[asyncpg.Record]:
        """Claim up to ``limit`` due jobs for ``worker_id``."""
        rows: list[asyncpg.Record] = await self.pool.fetch(self.q.job_claim_many, queues, limit, worker_id)
        return rows

    async def job_next_due(self, queues: Sequence[str]) -> dt.datetime | None:
        """The earliest run_at of a delayed job in these queues, if any."""
        v: dt.datetime | None = await self.pool.fetchval(self.q.job_next_due, queues)
        return v

    async def job_finalize_many(self, worker_id: int, batch: FlushBatch) -> FinalizeResult:
        """Write one flush: end and put back jobs (fenced), then COPY their runs, atomically."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                self.q.job_finalize_many,
                worker_id,
                batch.ended_ids,
                batch.ended_attempts,
                batch.back_ids,
                batch.back_attempts,
                batch.back_at,
                batch.back_delay,
                batch.back_error_inc,
                batch.back_error,
            )
            assert row is not None  # noqa: S101 - a SELECT of scalars always returns a row
            ended = frozenset(row[0] or ())
            put_back: dict[int, dt.datetime] = dict(zip(row[1] or (), row[2] or (), strict=True))
            records = batch.runs
            if len(ended) + len(put_back) < len(batch.ended_ids) + len(batch.back_ids):
                # Some jobs were no longer ours (reaped, or a repeated flush): no run rows.
                records = [r for r in records if r[0] in ended or r[0] in put_back]
            for r in records:
                at = put_back.get(r[0])
                if at is not None:
                    r[RUN_RETRY_AT] = at
            if records:
                await conn.copy_records_to_table(
                    "job_runs", records=records, columns=RUN_COLUMNS, schema_name=self.schema
                )
            return FinalizeResult(ended, put_back, len(records))

    async def job_release_many(self, worker_id: int, ids: Sequence[int]) -> int:
        """Hand back claimed jobs that never started."""
        status: str = await self.pool.execute(self.q.job_release_many, worker_id, list(ids))
        return int(status.rsplit(maxsplit=1)[-1])

    # -- workers -------------------------------------------------------------------------

    async def worker_register(self, queues: Sequence[str]) -> int:
        """Insert this process's worker row; returns its id."""
        wid: int = await self.pool.fetchval(
            self.q.worker_register, os.getpid(), socket.gethostname(), list(queues)
        )
        return wid

    async def worker_heartbeat(self, worker_id: int) -> bool:
        """Refresh the heartbeat; False means the row is gone (this worker was reaped)."""
        return await self.pool.fetchval(self.q.worker_heartbeat, worker_id) is not None

    async def worker_deregister(self, worker_id: int) -> int:
        """Release everything the worker still holds and delete its row; returns jobs released."""
        released: int | None = await self.pool.fetchval(self.q.worker_deregister, worker_id)
        return released or 0

    # -- listening -----------------------------------------------------------------------

    async def listen_connect(self) -> ListenConn:
        """A dedicated connection for LISTEN, outside the pool when we know the DSN.

        With only an application pool, one of its connections is held for the worker's
        life instead (released on close, where the pool's reset runs ``UNLISTEN *``).
        """
        if self.dsn is not None:
            conn: asyncpg.Connection = await asyncpg.connect(self.dsn)
            return conn
        acquired: PoolConnectionProxy = await self.pool.acquire()
        return acquired

    async def listen_probe(self, conn: ListenConn, payload: str) -> None:
        """Send a notification to our own channel on the LISTEN connection."""
        await conn.execute(self.q.listen_probe, self.channel, payload)

    async def listen_close(self, conn: ListenConn) -> None:
        """Close (or give back) a connection from :meth:`listen_connect`."""
        if isinstance(conn, PoolConnectionProxy):
            await self.pool.release(conn)
        else:
            await conn.close(timeout=5)
