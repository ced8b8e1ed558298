"""LISTEN on the schema's channel, on a connection of its own, and wake the fetcher.

A notification carries no job, only a reason to look (see the payload format in
``queries.sql``): ``r:<queue>`` wakes the fetcher, ``d:<seconds>:<queue>`` arms its timer.
Notifications for queues this worker does not serve are ignored.

LISTEN connections die silently in practice (pgqueuer#253, pg-boss#850: half-open TCP,
server restarts), so this stage does not trust its connection: every
``probe_interval`` it sends itself a notification and expects it back within
``probe_timeout``; a lost connection or an unanswered probe means reconnect with backoff,
then one claim to catch what was scheduled during the gap. While disconnected the worker
polls at a short interval (``on_state(False)``).
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Callable

import anyio
import asyncpg

from ._clock import ignore
from ._errors import describe
from ._log import LISTENER_CONNECTED, LISTENER_LOST, get_logger
from ._store import ListenConn, Store, is_unavailable

__all__ = ["Listener", "parse_payload"]

PROBE_INTERVAL_S = 10.0
PROBE_TIMEOUT_S = 5.0
RECONNECT_MAX_S = 5.0
_log = get_logger()


def parse_payload(payload: str) -> tuple[str, str, float | None]:
    """Split a payload into ``(kind, queue_or_token, due_in_seconds)``; unknown shapes give kind ''."""
    kind, _, rest = payload.partition(":")
    if kind == "d":
        at, _, queue = rest.partition(":")
        try:
            when = float(at)
        except ValueError:
            return "", "", None
        return ("d", queue, when) if math.isfinite(when) else ("", "", None)
    if kind in ("r", "p", "c"):
        return kind, rest, None
    return "", "", None


class Listener:
    """Owns the LISTEN connection for one worker."""

    def __init__(
        self,
        *,
        store: Store,
        queues: tuple[str, ...],
        on_ready: Callable[[], None],
        on_due: Callable[[float], None],
        on_state: Callable[[bool], None],
        on_cancel: Callable[[int], object] = ignore,
        on_error: Callable[[BaseException], None] = ignore,
        probe_interval: float = PROBE_INTERVAL_S,
        probe_timeout: float = PROBE_TIMEOUT_S,
    ) -> None:
        self._store = store
        self._queues = frozenset(queues)
        self._on_ready = on_ready
        self._on_due = on_due
        self._on_state = on_state
        self._on_cancel = on_cancel
        self._on_error = on_error
        self._probe_interval = probe_interval
        self._probe_timeout = probe_timeout
        self._token = secrets.token_hex(8)
        self._probe_seen = asyncio.Event()
        self._lost = asyncio.Event()
        self.connected = False
        self.connects = 0  # successful connects, for tests and metrics

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        kind, name, at = parse_payload(str(payload))
        if kind == "r" and name in self._queues:
            self._on_ready()
        elif kind == "d" and name in self._queues and at is not None:
            self._on_due(at)
        elif kind == "p" and name == self._token:
            self._probe_seen.set()
        elif kind == "c" and name.isdigit():
            self._on_cancel(int(name))

    def _on_terminate(self, _conn: object) -> None:
        self._lost.set()

    async def _connect(self) -> ListenConn:
        conn = await self._store.listen_connect()
        try:
            self._lost = asyncio.Event()
            conn.add_termination_listener(self._on_terminate)
            await conn.add_listener(self._store.channel, self._on_notify)
        except BaseException:
            await self._close(conn)
            raise
        self.connected = True
        self.connects += 1
        self._on_state(True)  # noqa: FBT003 - the callback takes the new state
        _log.info(LISTENER_CONNECTED, channel=self._store.channel)
        return conn

    async def _close(self, conn: ListenConn) -> None:
        with anyio.move_on_after(2, shield=True):
            try:
                conn.remove_termination_listener(self._on_terminate)
                # UNLISTEN before the connection goes back to an application's pool: LISTEN
                # state must not leak into a pooled connection (asyncpg warns when it would).
                await conn.remove_listener(self._store.channel, self._on_notify)
                await self._store.listen_close(conn)
            except Exception:  # noqa: BLE001 - the connection is being dropped anyway
                conn.terminate()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; reports started once LISTEN is in place.

        The first connect retries while the database is unreachable; any other error (a
        wrong password, say) propagates, so a bad configuration fails the worker's start.
        """
        conn = await self._reconnect(first=True)
        task_status.started()
        try:
            while True:
                reason = await self._serve(conn)
                self.connected = False
                self._on_state(False)  # noqa: FBT003
                _log.warning(LISTENER_LOST, reason=reason)
                self._on_error(ConnectionError(f"LISTEN connection lost: {reason}"))
                await self._close(conn)
                conn = await self._reconnect()
                self._on_ready()  # claim once: jobs scheduled during the gap sent no notification we saw
        finally:
            self.connected = False
            await self._close(conn)

    async def _serve(self, conn: ListenConn) -> str:
        """Return a reason once the connection is lost or stops answering probes."""
        while True:
            with anyio.move_on_after(self._probe_interval):
                await self._lost.wait()
                return "connection closed"
            if conn.is_closed():
                return "connection closed"
            self._probe_seen.clear()
            try:
                with anyio.fail_after(self._probe_timeout):
                    await self._store.listen_probe(conn, f"p:{self._token}")
                    await self._probe_seen.wait()
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                return f"probe failed: {type(exc).__name__}"

    async def _reconnect(self, *, first: bool = False) -> ListenConn:
        delay = 0.05
        while True:
            try:
                return await self._connect()
            except Exception as exc:
                if first and not is_unavailable(exc):
                    raise
                _log.warning(LISTENER_LOST, reason=f"connect failed: {describe(exc)}", retry_in_s=delay)
                self._on_error(exc)
                await anyio.sleep(delay)
                delay = min(RECONNECT_MAX_S, delay * 2)
