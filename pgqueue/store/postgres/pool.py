"""Connections: pgqueue's pool and the connections stages hold (``errors.py``: what driver errors mean).

Our own pool is created with a no-op ``reset``: asyncpg's default reset runs
``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on every release,
one extra round trip per ``schedule()``. Our pooled connections never keep session state
(LISTEN releases its connection only after UNLISTEN; the vacuum lock is released before
its connection goes back), so there is nothing to reset.
"""

from __future__ import annotations

import contextlib
import socket

import anyio
import asyncpg
from asyncpg.pool import PoolConnectionProxy

from pgqueue._config import POOL_MAX_SIZE, POOL_MIN_SIZE
from pgqueue.store import Held

from .errors import is_conflict, is_unavailable
from .queries import QUERIES, Queries

__all__ = [
    "APP_NAME",
    "CONNECT_TIMEOUT_S",
    "LISTENER_APP_NAME",
    "HeldConnection",
    "OwnConnection",
    "Pool",
    "StoreBase",
    "can_hold",
    "close_pool",
    "create_pool",
]

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
