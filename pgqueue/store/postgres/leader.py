"""The maintenance leader's lock: a session advisory lock on a connection kept for it.

The lock lives exactly as long as the session: the server frees it when the leader's
process dies or its connection drops (keepalives on both ends bound how long a vanished
peer can keep it), so the next worker to try takes over. Stepping down unlocks at once.
With only an application's pool, one of its connections is held for the leadership and
unlocked before it goes back: a session lock must never leak into a pooled connection.
"""

from __future__ import annotations

import os

import anyio
from asyncpg.pool import PoolConnectionProxy

from .pool import CONNECT_TIMEOUT_S, HOLD_MIN_POOL, OwnConnection, StoreBase, terminate, usable

__all__ = ["LeaderMixin", "PgLeaderLock"]

LEADER_APP_NAME = "pgqueue-leader"  # then ":<pid>": pg_stat_activity shows which process leads
LEADER_MIN_POOL = HOLD_MIN_POOL + 2  # an application pool that can keep a connection for the lock
RELEASE_TIMEOUT_S = 2.0


class PgLeaderLock:
    """The held lock; :meth:`check` proves it, :meth:`release` hands it over."""

    def __init__(self, store: LeaderMixin, conn: OwnConnection, key: str) -> None:
        self._store = store
        self._conn = conn
        self._key = key
        self._released = False

    async def check(self, within: float) -> bool:
        """True while the session answers within ``within`` seconds and still holds the lock."""
        if self._released or not usable(self._conn):
            return False
        try:
            held = await self._conn.fetchval(self._store.q.leader_lock_check, self._key, timeout=within)
        except Exception:  # noqa: BLE001 - any failure means the lock can no longer be vouched for
            return False
        return bool(held)

    async def release(self, *, unlock: bool = True) -> None:
        """Unlock and drop the connection (a pool's goes back unlocked). Idempotent, never raises.

        ``unlock=False``: the lock was never taken (unlocking would make the server warn).
        """
        if self._released:
            return
        self._released = True
        conn = self._conn
        unlocked = not unlock
        with anyio.move_on_after(RELEASE_TIMEOUT_S, shield=True):
            try:
                if unlock:
                    await conn.fetchval(self._store.q.leader_unlock, self._key)
                    unlocked = True
            except Exception:  # noqa: BLE001 - a broken session: closing it frees the lock
                unlocked = False
        if not unlocked:
            terminate(conn)
        with anyio.move_on_after(RELEASE_TIMEOUT_S, shield=True):
            try:
                if isinstance(conn, PoolConnectionProxy):
                    await self._store.pool.release(conn)
                else:
                    await conn.close(timeout=RELEASE_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - it is being dropped anyway
                terminate(conn)


class LeaderMixin(StoreBase):
    """``maintenance.sql``'s leader queries."""

    def can_elect(self) -> bool:
        """With the DSN (a connection of our own), or a pool that can spare one for good.

        A worker on an application's pool already keeps LISTEN and, on pools of at least
        HOLD_MIN_POOL, its claim and flush connections there; the lock takes one more and
        heartbeats, reaping and schedule() need one left, so smaller pools cannot.
        """
        return self.dsn is not None or self.pool.get_max_size() >= LEADER_MIN_POOL

    async def leader_lock(self) -> PgLeaderLock | None:
        """Try once for the schema's leader lock; None when another session holds it.

        Raises what connecting raised (the caller retries at its next try).
        """
        key = f"pgqueue.leader:{self.schema}"
        # Held (the usual answer for all but one worker): no connection, no server warning.
        if await self.pool.fetchval(self.q.leader_lock_held, key, timeout=CONNECT_TIMEOUT_S):
            return None
        conn = await self.connect_own(f"{LEADER_APP_NAME}:{os.getpid()}")
        lock = PgLeaderLock(self, conn, key)
        try:
            got = await conn.fetchval(self.q.leader_lock_try, key, timeout=CONNECT_TIMEOUT_S)
        except BaseException:
            await lock.release()
            raise
        if not got:  # taken between the look and the try
            await lock.release(unlock=False)
            return None
        return lock
