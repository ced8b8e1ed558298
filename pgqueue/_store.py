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
import ssl
from collections.abc import Sequence
from dataclasses import field
from typing import Any

import anyio
import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ._models import CancelResult
from ._sql import QUERIES, Queries, quote_ident

__all__ = [
    "FinalizeResult",
    "FlushBatch",
    "HeldConnection",
    "Store",
    "can_hold",
    "connect_error_hint",
    "create_pool",
    "is_unavailable",
    "is_undefined_object",
]

CONNECT_TIMEOUT_S = 10.0
HOLD_MIN_POOL = 4  # connections a pool needs before stages may hold some for themselves
APP_NAME = "pgqueue"  # pg_stat_activity.application_name of our pooled connections
LISTENER_APP_NAME = "pgqueue-listener"
Executor = asyncpg.Pool | asyncpg.Connection
ListenConn = asyncpg.Connection | PoolConnectionProxy  # a pool connection when we only have a pool


# Errors that mean "the database cannot be reached right now": worth retrying, never a bug.
_UNAVAILABLE = (
    OSError,  # refused, reset, unreachable, DNS
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08, including a connection that went away
    asyncpg.CannotConnectNowError,  # 57P03: starting up or in recovery
    asyncpg.AdminShutdownError,  # 57P01: shut down or terminated (pg_terminate_backend)
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.TooManyConnectionsError,  # 53300
)


_PERMANENT = (
    asyncpg.ProtocolViolationError,  # 08P01, e.g. a pooler refusing a startup parameter
    ssl.SSLCertVerificationError,  # an OSError, but waiting will not fix a certificate
)
_CONNECTION_GONE = ("connection is closed", "connection was closed", "connection was lost")


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that mean the server is unreachable, restarting or dropped us."""
    if isinstance(exc, _PERMANENT):
        return False
    if isinstance(exc, asyncpg.InterfaceError):
        text = str(exc).lower()
        return any(phrase in text for phrase in _CONNECTION_GONE)
    if isinstance(exc, asyncpg.InternalClientError):
        # Right after the server terminates a pooled connection, asyncpg may hand it out once
        # more before it has seen the end of the stream; the query then fails with "cannot
        # switch to state ...; another operation is in progress" (found by the chaos suite).
        return "cannot switch to state" in str(exc)
    return isinstance(exc, _UNAVAILABLE)


# Errors that mean "the schema lacks what this code expects": never migrated, or older.
_UNDEFINED = (
    asyncpg.UndefinedTableError,  # 42P01
    asyncpg.UndefinedColumnError,  # 42703
    asyncpg.InvalidSchemaNameError,  # 3F000
)


def is_undefined_object(exc: BaseException) -> bool:
    """True for errors that mean a table, column or schema of pgqueue's is missing."""
    return isinstance(exc, _UNDEFINED)


def connect_error_hint(exc: BaseException) -> str | None:
    """What to check when connecting failed for a reason waiting will not fix; None otherwise."""
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return "check the user and password in the DSN"
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return "check the user in the DSN, and pg_hba.conf"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return "check the database name in the DSN"
    if isinstance(exc, asyncpg.ClientConfigurationError):
        return "check the DSN: postgresql://user:password@host:port/database"
    return None


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """Pool reset hook: our pooled connections hold no session state (see module doc)."""


async def create_pool(
    dsn: str, *, min_size: int = 0, max_size: int = 10, pgbouncer: bool = False
) -> asyncpg.Pool:
    """Open a pool for pgqueue's own use.

    ``min_size`` 0 means opening does not connect: a scheduler can be created while the
    database is down, and ``schedule()`` reports the outage when it happens.
    ``pgbouncer``: no statement cache (transaction mode) and no startup parameters beyond
    the application name (PgBouncer refuses unknown ones unless told to ignore them).

    ``plan_cache_mode=force_generic_plan``: PostgreSQL would otherwise re-plan the claim on
    every execution (it rates the generic plan of a LIMIT $n query as costlier), about
    0.35 ms per claim, which is most of the pickup-latency gap to the raw design. Every
    named query was checked to keep its index scans as a generic plan (the claim uses the
    claim and due indexes whatever the table size; finalize is a primary-key scan).
    ``jit=off``: a generic plan's cost is estimated from default selectivities, which on a
    large backlog crosses ``jit_above_cost``; LLVM compilation then took ~10 ms per claim
    (3 ms → 16 ms at 1M queued jobs on PostgreSQL 15). Queue statements are short; JIT only
    costs here.
    An application's own pool keeps PostgreSQL's defaults: slower, equally correct.
    """
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        reset=_no_reset,
        statement_cache_size=0 if pgbouncer else 100,
        server_settings=(
            {"application_name": APP_NAME}
            if pgbouncer
            else {"application_name": APP_NAME, "plan_cache_mode": "force_generic_plan", "jit": "off"}
        ),
    )
    return pool


@dataclasses.dataclass(slots=True)
class FlushBatch:
    """One flush as the parallel arrays of ``job_finalize_many``: one unnest per family.

    Ended runs always fill ids, attempts and times. Their outcomes, errors, results and log
    flags may stop short (the statement pads them with NULL: a logged success without a
    result), so a batch of plain successes sends four arrays; :meth:`end_detail` fills in
    a run that is more than that. Put-back runs are rare and fill every array.
    Times are epoch seconds (float8 is cheap to encode; asyncpg's timestamptz is not).
    """

    end_ids: list[int] = field(default_factory=list)
    end_attempts: list[int] = field(default_factory=list)
    end_started: list[float] = field(default_factory=list)
    end_finished: list[float] = field(default_factory=list)
    end_outcomes: list[str | None] = field(default_factory=list)
    end_errors: list[str | None] = field(default_factory=list)
    end_results: list[str | None] = field(default_factory=list)
    end_log: list[bool | None] = field(default_factory=list)
    back_ids: list[int] = field(default_factory=list)
    back_attempts: list[int] = field(default_factory=list)
    back_started: list[float] = field(default_factory=list)
    back_finished: list[float] = field(default_factory=list)
    back_outcomes: list[str] = field(default_factory=list)
    back_errors: list[str | None] = field(default_factory=list)
    back_due_at: list[float] = field(default_factory=list)
    """When each put-back run was due (the job's run_at before the update), epoch seconds."""
    back_retry_at: list[dt.datetime | None] = field(default_factory=list)
    back_delay: list[float] = field(default_factory=list)
    back_error_inc: list[int] = field(default_factory=list)
    back_log: list[bool] = field(default_factory=list)

    def end_detail(
        self,
        index: int,
        outcome: str | None,
        error: str | None,
        result: str | None,
        log: bool,  # noqa: FBT001
    ) -> None:
        """Record what ended run ``index`` has beyond a logged success (None: succeeded)."""
        grow = index + 1 - len(self.end_outcomes)
        if grow > 0:
            pad: list[Any] = [None] * grow
            self.end_outcomes += pad
            self.end_errors += pad
            self.end_results += pad
            self.end_log += pad
        self.end_outcomes[index] = outcome
        self.end_errors[index] = error
        self.end_results[index] = result
        self.end_log[index] = log

    def without_runs(self) -> None:
        """Finalize the jobs but log none of their runs (a run row the database refuses)."""
        self.end_log = [False] * len(self.end_ids)
        self.back_log = [False] * len(self.back_ids)

    def arguments(self) -> tuple[list[Any], ...]:
        """The arrays in field order, which is the order of job_finalize_many's $2 .. $20."""
        return tuple(getattr(self, name) for name in _BATCH_FIELDS)


_BATCH_FIELDS = tuple(f.name for f in dataclasses.fields(FlushBatch))


@dataclasses.dataclass(frozen=True, slots=True)
class FinalizeResult:
    """What a flush changed: only runs of jobs this worker still owned were recorded."""

    ended: frozenset[int]
    put_back: dict[int, dt.datetime]
    runs_logged: int
    put_back_due_in: float | None = None
    """Seconds (server clock) until the earliest put-back job is due."""


def can_hold(pool: asyncpg.Pool) -> bool:
    """Whether the pool is large enough for a worker to keep connections for itself."""
    return pool.get_max_size() >= HOLD_MIN_POOL


class HeldConnection:
    """One pool connection a stage keeps for its lifetime (the claim loop, the flusher).

    It saves the pool's acquire and release on every claim and flush (~30 µs, more after an
    idle gap, and on the pickup-latency path), as the raw design's dedicated connections do.
    After any error the connection goes back to the pool, which drops it if it broke, and
    the next use acquires a fresh one. A worker therefore keeps two connections of the pool
    while it runs (plus one for LISTEN, outside the pool when the DSN is known), and
    schedule() one more, but only on pools of at least HOLD_MIN_POOL connections: a smaller
    pool would be starved of connections for everything else.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._conn: PoolConnectionProxy | None = None

    async def get(self) -> PoolConnectionProxy:
        """The held connection, acquired again if there is none or it was closed."""
        conn = self._conn
        if conn is None or conn.is_closed():
            await self.release()
            conn = self._conn = await self._pool.acquire(timeout=CONNECT_TIMEOUT_S)
        return conn

    async def release(self) -> None:
        """Give the connection back (after an error, and when the stage stops)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await self._pool.release(conn, timeout=CONNECT_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - a broken connection: the pool discards it
                conn.terminate()


def _keepalive(conn: asyncpg.Connection) -> None:
    """TCP keepalives on the LISTEN socket, so a dead peer is noticed in ~25 s, not hours.

    asyncpg has no option for client-side keepalives; the socket comes from the transport
    (``get_extra_info`` is asyncio's public API, ``_transport`` is asyncpg's attribute).
    Unix sockets have no keepalive and are skipped. The listener's probe is the main check;
    this only shortens how long a half-open socket can hide.
    """
    transport = getattr(conn, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, opt):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)


class Store:
    """Typed access to pgqueue's tables in one schema."""

    def __init__(
        self, pool: asyncpg.Pool, schema: str, *, dsn: str | None = None, lane: bool = False
    ) -> None:
        self.pool = pool
        # schedule()'s fast lane: one held connection, used whenever no other schedule() has it
        # (the common case of one enqueue at a time), skipping the pool's acquire/release;
        # concurrent calls go through the pool. Only on a pool pgqueue owns.
        self._lane = HeldConnection(pool) if lane and pool.get_max_size() >= HOLD_MIN_POOL else None
        self._lane_busy = False
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
        timeout_s: float | None = None,
        delay_s: float | None = None,
    ) -> int:
        """Insert one job and notify its queue, in one statement."""
        args = (queue, type_, params, run_at, priority, self.channel, timeout_s, delay_s)
        lane = self._lane
        if conn is None and lane is not None and not self._lane_busy:
            self._lane_busy = True
            try:
                lane_id: int = await (await lane.get()).fetchval(self.q.job_insert, *args)
            except BaseException:
                await lane.release()
                raise
            finally:
                self._lane_busy = False
            return lane_id
        ex: Executor = self.pool if conn is None else conn
        job_id: int = await ex.fetchval(self.q.job_insert, *args)
        return job_id

    async def close(self) -> None:
        """Give back the fast lane's connection (before the pool closes)."""
        if self._lane is not None:
            await self._lane.release()

    async def job_insert_many(
        self,
        conn: asyncpg.Connection | None,
        *,
        queue: str,
        type_: str,
        params: list[str],
        run_at: dt.datetime | None,
        priority: int,
        timeout_s: float | None = None,
        delay_s: float | None = None,
    ) -> list[int]:
        """Insert jobs of one type and queue, one notification for the lot."""
        ex: Executor = self.pool if conn is None else conn
        row = await ex.fetchrow(
            self.q.job_insert_many, queue, type_, params, run_at, priority, self.channel, timeout_s, delay_s
        )
        assert row is not None  # noqa: S101 - an aggregate always returns a row
        ids: list[int] = row[0] or []
        return ids

    # -- the worker's hot path ----------------------------------------------------------

    async def _on(self, held: HeldConnection | None, method: str, query: str, *args: object) -> Any:  # noqa: ANN401 - whatever the asyncpg method returns
        """Run one statement on ``held``, or on the pool when there is none.

        The one place for the held-connection rule: after any error the connection goes back
        to the pool (which drops it if it broke), and the next call acquires a fresh one.
        """
        if held is None:
            return await getattr(self.pool, method)(query, *args)
        try:
            return await getattr(await held.get(), method)(query, *args)
        except BaseException:
            await held.release()
            raise

    async def job_claim_many(
        self, queues: Sequence[str], limit: int, worker_id: int, held: HeldConnection | None = None
    ) -> list[asyncpg.Record]:
        """Claim up to ``limit`` due jobs for ``worker_id`` (on ``held`` when given)."""
        rows: list[asyncpg.Record] = await self._on(
            held, "fetch", self.q.job_claim_many, queues, limit, worker_id
        )
        return rows

    async def job_next_due(self, queues: Sequence[str], held: HeldConnection | None = None) -> float | None:
        """Seconds (by the server's clock) until the next delayed job in these queues is due."""
        due: float | None = await self._on(held, "fetchval", self.q.job_next_due, queues)
        return due

    async def job_finalize_many(
        self,
        worker_id: int,
        batch: FlushBatch,
        held: HeldConnection | None = None,
        *,
        clock_offset: float = 0.0,
    ) -> FinalizeResult:
        """Write one flush in one statement: end and put back jobs, fenced, and log their runs.

        ``clock_offset``: seconds that put the batch's worker-clock times on the database's clock.
        """
        row: asyncpg.Record | None = await self._on(
            held, "fetchrow", self.q.job_finalize_many, worker_id, *batch.arguments(), clock_offset
        )
        assert row is not None  # noqa: S101 - a SELECT of scalars always returns a row
        put_back: dict[int, dt.datetime] = dict(zip(row[1] or (), row[2] or (), strict=True))
        return FinalizeResult(frozenset(row[0] or ()), put_back, row[3], row[4])

    async def job_release_many(self, worker_id: int, ids: Sequence[int]) -> int:
        """Hand back claimed jobs that never started."""
        status: str = await self.pool.execute(self.q.job_release_many, worker_id, list(ids))
        return int(status.rsplit(maxsplit=1)[-1])

    async def job_cancel(self, job_id: int) -> CancelResult:
        """End a waiting job as cancelled, or flag a claimed one and tell its worker."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(self.q.job_lock, job_id)
            if row is None:
                return CancelResult.NOT_FOUND
            if row["worker_id"] is None:
                await conn.execute(self.q.job_cancel_pending, job_id, "cancelled before it ran")
                return CancelResult.CANCELLED
            await conn.execute(self.q.job_cancel_running, job_id, self.channel)
            return CancelResult.CANCELLING

    async def job_cancel_requested_many(self, ids: Sequence[int]) -> set[int]:
        """Which of these jobs were flagged by cancel()."""
        rows = await self.pool.fetch(self.q.job_cancel_requested_many, list(ids))
        return {r[0] for r in rows}

    # -- workers -------------------------------------------------------------------------

    async def worker_register(self, queues: Sequence[str]) -> tuple[int, float]:
        """Insert this process's worker row; returns its id and the server's clock (epoch s)."""
        row = await self.pool.fetchrow(
            self.q.worker_register, os.getpid(), socket.gethostname(), list(queues)
        )
        assert row is not None  # noqa: S101 - INSERT ... RETURNING returns its row
        return int(row[0]), float(row[1])

    async def worker_heartbeat(self, worker_id: int) -> float | None:
        """Refresh the heartbeat; returns the server's clock, or None once this worker was reaped.

        Bounded waits for a connection and for the answer: a heartbeat queued behind busy
        connections would otherwise come too late and get this worker reaped.
        """
        async with self.pool.acquire(timeout=CONNECT_TIMEOUT_S) as conn:
            server: float | None = await conn.fetchval(
                self.q.worker_heartbeat, worker_id, timeout=CONNECT_TIMEOUT_S
            )
        return server

    async def worker_reap(self, dead_after: float, self_id: int) -> tuple[int, int]:
        """Release the jobs of workers silent for ``dead_after`` seconds and drop them.

        Two statements in one transaction on purpose: the first locks the dead rows (and so
        waits for their claims in flight), the second reads the jobs with a newer snapshot.
        Returns (jobs released, workers reaped).
        """
        async with self.pool.acquire() as conn, conn.transaction():
            dead = [r[0] for r in await conn.fetch(self.q.worker_reap_lock, dead_after, self_id)]
            if not dead:
                return 0, 0
            row = await conn.fetchrow(self.q.worker_reap_release, dead)
            assert row is not None  # noqa: S101 - a SELECT of scalars always returns a row
            return int(row[0]), int(row[1])

    async def jobs_vacuum_if_needed(self, min_dead: int) -> int | None:
        """VACUUM the hot table when it holds ``min_dead`` dead tuples (and 5% of its live ones).

        Returns the dead tuples it removed (as counted before), or None when it did not vacuum:
        below the threshold, or another worker holds the vacuum lock. VACUUM cannot run in a
        transaction, so this uses a plain pooled connection and a session advisory lock.
        """
        table = f"{quote_ident(self.schema)}.jobs"
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(self.q.jobs_dead_tuples, table)
            if row is None or row[0] < min_dead or row[0] < row[1] // 20:
                return None
            key = f"pgqueue.vacuum:{self.schema}"
            if not await conn.fetchval(self.q.jobs_vacuum_lock, key):
                return None
            try:
                await conn.execute(self.q.jobs_vacuum)
            finally:
                # Shielded: a session lock left on a pooled connection (reset is a no-op)
                # would stop every worker from vacuuming while that connection lives.
                with anyio.CancelScope(shield=True), anyio.move_on_after(CONNECT_TIMEOUT_S) as scope:
                    await conn.fetchval(self.q.jobs_vacuum_unlock, key)
                if scope.cancelled_caught:
                    conn.terminate()
            dead: int = row[0]
            return dead

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
            conn: asyncpg.Connection = await asyncpg.connect(
                self.dsn, timeout=CONNECT_TIMEOUT_S, server_settings={"application_name": LISTENER_APP_NAME}
            )
            _keepalive(conn)
            return conn
        acquired: PoolConnectionProxy = await self.pool.acquire(timeout=CONNECT_TIMEOUT_S)
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
