"""Connections: pgqueue's pool, the connections stages hold, and what driver errors mean.

Our own pool is created with a no-op ``reset``: asyncpg's default reset runs
``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on every release,
one extra round trip per ``schedule()``. Our pooled connections never keep session state
(LISTEN releases its connection only after UNLISTEN; the vacuum lock is released before
its connection goes back), so there is nothing to reset.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import asyncpg
from asyncpg.pool import PoolConnectionProxy

from pgqueue._config import POOL_MAX_SIZE, POOL_MIN_SIZE
from pgqueue._errors import describe
from pgqueue._log import CONFLICT_RERUN, get_logger
from pgqueue.store import Held

from .queries import QUERIES, Queries

__all__ = [
    "APP_NAME",
    "CONNECT_TIMEOUT_S",
    "LISTENER_APP_NAME",
    "HeldConnection",
    "OwnConnection",
    "Pool",
    "StoreBase",
    "again_on_conflict",
    "can_hold",
    "close_pool",
    "connect_error_hint",
    "create_pool",
    "is_conflict",
    "is_unavailable",
    "is_undefined_object",
]

T = TypeVar("T")
_log = get_logger()

CONNECT_TIMEOUT_S = 10.0
POOL_CLOSE_S = 10.0  # Scheduler.close(): a graceful close of answering connections takes ms
HOLD_MIN_POOL = 4  # connections a pool needs before stages may hold some for themselves
APP_NAME = "pgqueue"  # pg_stat_activity.application_name of our pooled connections
LISTENER_APP_NAME = "pgqueue-listener"
Executor = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy
OwnConnection = asyncpg.Connection | PoolConnectionProxy
"""A connection one stage keeps for itself (LISTEN, the leader lock): its own, or a pool's."""
Pool = asyncpg.Pool
"""An application's asyncpg pool, as ``Scheduler(pool=...)`` takes it."""


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
        # switch to state ...; another operation is in progress" (the chaos suite provokes it).
        return "cannot switch to state" in str(exc)
    return isinstance(exc, _UNAVAILABLE)


# PostgreSQL rolled a transaction back to break a deadlock (40P01) or a serialization
# conflict (40001): nothing it did remains, and running it again is safe. pgqueue's own
# statements lock rows of one table in one order where they can, but a flush meets rows in
# the order its plan reads them, and an application's transaction in any order.
_CONFLICT = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
CONFLICT_RETRIES = 3  # runs of a transaction PostgreSQL keeps choosing as the victim


def is_conflict(exc: BaseException) -> bool:
    """True when PostgreSQL rolled the transaction back to break a conflict: run it again."""
    return isinstance(exc, _CONFLICT)


async def again_on_conflict(what: str, run: Callable[[], Awaitable[T]]) -> T:
    """``await run()``, run again (up to ``CONFLICT_RETRIES`` runs in all) while it is a conflict's victim.

    ``run`` must be one whole transaction (one statement, or its own ``transaction()``):
    a victim's transaction is rolled back entirely, so its next run starts clean. Each
    rerun is logged (``conflict_rerun``, a warning naming ``what``): deadlocks that keep
    coming back point at an application transaction locking jobs. The last conflict
    propagates.
    """
    for attempt in range(1, CONFLICT_RETRIES + 1):
        try:
            return await run()
        except _CONFLICT as exc:
            if attempt == CONFLICT_RETRIES:
                raise
            _log.warning(CONFLICT_RERUN, statement=what, attempt=attempt, error=describe(exc))
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


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
    dsn: str, *, min_size: int = POOL_MIN_SIZE, max_size: int = POOL_MAX_SIZE, pgbouncer: bool = False
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


async def close_pool(pool: asyncpg.Pool) -> None:
    """Close a pool gracefully within ``POOL_CLOSE_S`` seconds, then drop what is left.

    A graceful close waits for every connection in use to come back and for the server to
    see each one off; over a network that went silent (a server or a link gone without a
    reset) that takes until the kernel gives up, a quarter of an hour or more. Past the
    deadline the pool terminates its connections (asyncpg's ``Pool.terminate``): sockets
    closed at once, nothing more sent.
    """
    with anyio.move_on_after(POOL_CLOSE_S):
        await pool.close()
        return
    pool.terminate()


def can_hold(pool: asyncpg.Pool) -> bool:
    """Whether the pool is large enough for a worker to keep connections for itself."""
    return pool.get_max_size() >= HOLD_MIN_POOL


class HeldConnection:
    """One pool connection a stage keeps for its lifetime (the claim loop, the flusher).

    It saves the pool's acquire and release on every claim and flush (~30 µs, more after an
    idle gap, and on the pickup-latency path), as the raw design's dedicated connections do.
    ``fetch`` runs one statement on it, for the calls on the pickup's path (the claim,
    ``schedule()``): fewer calls than ``StoreBase._connection``'s context, which the other
    statements use. After any error the connection goes back to the pool,
    which drops it if it broke, and the next use acquires a fresh one. A worker therefore
    keeps two connections of the pool while it runs (plus one for LISTEN, outside the pool
    when the DSN is known), and schedule() one more, but only on pools of at least
    HOLD_MIN_POOL connections: a smaller pool would be starved of connections for
    everything else.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._conn: PoolConnectionProxy | None = None

    async def get(self) -> PoolConnectionProxy:
        """The held connection, acquired again if there is none or it was closed."""
        conn = self._conn
        if conn is None or not usable(conn):
            await self.release()
            conn = self._conn = await self._pool.acquire(timeout=CONNECT_TIMEOUT_S)
        return conn

    async def open(self) -> None:
        """Acquire now: a worker opens its held connections while it registers (``Worker.run``).

        A failure is left to the first claim or flush, which acquires again and reports it.
        """
        with contextlib.suppress(Exception):
            await self.get()

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        """``fetch`` on the held connection, given back after any error (as ``_Using`` does)."""
        try:
            conn = await self.get()
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
        except BaseException:
            await self.release()
            raise
        return rows

    async def release(self) -> None:
        """Give the connection back (after an error, and when the stage stops)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await self._pool.release(conn, timeout=CONNECT_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - a broken connection: the pool discards it
                conn.terminate()


def terminate(conn: OwnConnection) -> None:
    """Close at once, without a round trip (a pool's connection detached from it: already gone)."""
    with contextlib.suppress(asyncpg.InterfaceError):
        conn.terminate()


# The server's side of the keepalives (settable by any user): a client that vanished stops
# holding its session locks after about 25 s instead of the kernel's two hours.
_SERVER_KEEPALIVE = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3"}


def _keepalive(conn: asyncpg.Connection) -> None:
    """TCP keepalives on our socket, so a dead peer is noticed in ~25 s, not hours.

    asyncpg has no option for client-side keepalives; the socket comes from the transport
    (``get_extra_info`` is asyncio's public API, ``_transport`` is asyncpg's attribute).
    Unix sockets have no keepalive and are skipped. The listener's probe and the leader's
    check are the main tests of a connection; this only shortens how long a half-open
    socket can hide.
    """
    transport = getattr(conn, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, opt):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)


def usable(conn: asyncpg.Connection | PoolConnectionProxy) -> bool:
    """Whether a connection (a pool's, or our own) can still run statements.

    A pooled connection that dies while idle is taken back by asyncpg's pool on its own
    (the proxy is detached), and then every call on the proxy, ``is_closed()`` included,
    raises InterfaceError.
    """
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        return False


def _own(held: Held) -> HeldConnection:
    """``held`` as this store's own, or TypeError (a memory store's, say)."""
    if not isinstance(held, HeldConnection):
        raise TypeError(f"not a connection held from this store: {held!r}")
    return held


class _Using:
    """The connection a statement runs on: the stage's held one, or the pool.

    The held-connection rule for the statements off the pickup's path (those on it call
    ``HeldConnection.fetch``, which keeps the same rule): after any error the connection
    goes back to the pool (which drops it if it broke), and the next use acquires a fresh
    one. A class rather than a generator-based context manager, which costs several times
    more on a CPU that has been idle.
    """

    __slots__ = ("_held", "_pool")

    def __init__(self, pool: asyncpg.Pool, held: Held | None) -> None:
        self._pool = pool
        self._held = None if held is None else _own(held)

    async def __aenter__(self) -> Executor:
        held = self._held
        if held is None:
            return self._pool
        try:
            return await held.get()
        except BaseException:
            await held.release()
            raise

    async def __aexit__(self, exc_type: type[BaseException] | None, *_exc: object) -> None:
        if exc_type is not None and self._held is not None:
            await self._held.release()


class StoreBase:
    """What every part of the PostgreSQL store shares: the pool, the schema, its queries."""

    def __init__(
        self, pool: asyncpg.Pool, schema: str, *, dsn: str | None = None, lane: bool = False
    ) -> None:
        self.pool = pool
        # schedule()'s fast lane: one held connection, used whenever no other schedule() has it
        # (the common case of one enqueue at a time), skipping the pool's acquire/release;
        # concurrent calls go through the pool. Only on a pool pgqueue owns.
        self._lane = HeldConnection(pool) if lane and can_hold(pool) else None
        self._lane_busy = False
        self.schema = schema
        self.dsn = dsn
        self.channel = f"{schema}_events"
        self.q: Queries = QUERIES.for_schema(schema)

    def is_unavailable(self, exc: BaseException) -> bool:
        """True for errors that mean the server is unreachable, restarting or dropped us."""
        return is_unavailable(exc)

    def is_conflict(self, exc: BaseException) -> bool:
        """True when PostgreSQL rolled the transaction back to break a deadlock or conflict."""
        return is_conflict(exc)

    async def connect_own(self, app_name: str) -> OwnConnection:
        """A connection for session state (LISTEN, a session lock), never shared with statements.

        Dedicated (outside the pool) when the DSN is known, with TCP keepalives on both ends,
        so a peer that vanished is noticed in about 25 s by this process and by the server
        (which then ends the session and drops its locks). With only an application's pool,
        one of its connections, which the caller must clean before giving it back.
        """
        if self.dsn is None:
            conn: OwnConnection = await self.pool.acquire(timeout=CONNECT_TIMEOUT_S)
            return conn
        own: asyncpg.Connection = await asyncpg.connect(
            self.dsn,
            timeout=CONNECT_TIMEOUT_S,
            server_settings={"application_name": app_name, **_SERVER_KEEPALIVE},
        )
        _keepalive(own)
        return own

    def hold(self) -> HeldConnection | None:
        """A pool connection for one stage to keep, or None when the pool is too small."""
        return HeldConnection(self.pool) if can_hold(self.pool) else None

    def _connection(self, held: Held | None) -> _Using:
        """``held``'s connection, or the pool when there is none (``async with``)."""
        return _Using(self.pool, held)

    async def _fetch(self, held: Held | None, query: str, *args: object) -> list[asyncpg.Record]:
        """One ``fetch`` on ``held``'s connection, or on the pool when there is none."""
        if held is None:
            rows: list[asyncpg.Record] = await self.pool.fetch(query, *args)
            return rows
        return await _own(held).fetch(query, *args)
