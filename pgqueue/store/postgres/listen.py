"""LISTEN on the schema's channel: a subscription that hides the connection from the listener.

The connection is dedicated (outside the pool) when the store knows the DSN. With only an
application's pool, one of its connections is held for the subscription's life and given
back only after ``UNLISTEN``: LISTEN state must never leak into a pooled connection
(asyncpg warns when a connection with listeners is released).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio
from asyncpg.pool import PoolConnectionProxy

from .pool import LISTENER_APP_NAME, OwnConnection, StoreBase, terminate, usable

__all__ = ["ListenMixin", "PgSubscription"]

CLOSE_TIMEOUT_S = 2.0
ListenConn = OwnConnection


class PgSubscription:
    """One LISTEN connection; notifications go to ``on_payload`` on the event loop."""

    def __init__(self, store: ListenMixin, conn: ListenConn, on_payload: Callable[[str], None]) -> None:
        self._store = store
        self._conn = conn
        self._on_payload = on_payload
        self._lost = asyncio.Event()
        self._closed = False

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self._on_payload(str(payload))

    def _on_terminate(self, _conn: object) -> None:
        self._lost.set()

    async def listen(self) -> None:
        """Watch for the connection's end and LISTEN on the channel."""
        self._conn.add_termination_listener(self._on_terminate)
        await self._conn.add_listener(self._store.channel, self._on_notify)

    def is_lost(self) -> bool:
        """True once the connection is closed (or, a pool's, was taken back by the pool)."""
        return self._lost.is_set() or not usable(self._conn)

    async def wait_lost(self) -> None:
        """Return when the connection reports its end."""
        await self._lost.wait()

    async def probe(self, payload: str) -> None:
        """Notify our own channel on this connection."""
        await self._conn.execute(self._store.q.listen_probe, self._store.channel, payload)

    async def aclose(self) -> None:
        """UNLISTEN, then give the connection back (a pool's) or close it (our own).

        Idempotent and never raises. Shielded with a deadline; a connection that cannot be
        cleaned is terminated, never returned to a pool with LISTEN state on it. A pool's
        connection that died is already detached by asyncpg (every call on it raises), so
        there is nothing left to clean.
        """
        if self._closed:
            return
        self._closed = True
        self._lost.set()  # whoever waits on this subscription must not wait on a closed one
        conn = self._conn
        unlistened = False
        with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
            try:
                conn.remove_termination_listener(self._on_terminate)
                await conn.remove_listener(self._store.channel, self._on_notify)
                unlistened = True
            except Exception:  # noqa: BLE001 - a broken connection: terminated below
                unlistened = False
        if not unlistened:
            terminate(conn)  # a pool discards a closed connection instead of reusing it
        with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
            try:
                if isinstance(conn, PoolConnectionProxy):
                    await self._store.pool.release(conn)  # a detached one: a no-op
                else:
                    await conn.close(timeout=CLOSE_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - it is being dropped anyway
                terminate(conn)


class ListenMixin(StoreBase):
    """Subscriptions to ``<schema>_events`` (``listen.sql``)."""

    async def subscribe(self, on_payload: Callable[[str], None]) -> PgSubscription:
        """Connect and LISTEN; raises what connecting raised (the caller decides on retries)."""
        conn = await self.connect_own(LISTENER_APP_NAME)
        sub = PgSubscription(self, conn, on_payload)
        try:
            await sub.listen()
        except BaseException:
            await sub.aclose()
            raise
        return sub
