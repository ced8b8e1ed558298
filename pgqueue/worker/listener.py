"""LISTEN on the schema's channel through a store subscription, and wake the fetcher.

A notification is a reason to look (payloads in ``listen.sql``): ``r:<queue>`` wakes the
fetcher, ``j:<job id>:<queue>`` hands it the id of one job due now (``Fetcher.notify_job``:
an idle worker claims it by id), ``d:<seconds>:<queue>`` arms its timer, ``c:<job id>``
asks the worker to stop a job it runs and ``s:<job id>`` to have one suspend at its next
checkpoint. Notifications for queues this worker does not
serve are ignored.

LISTEN connections die silently in practice (pgqueuer#253, pg-boss#850: half-open TCP,
server restarts), so this stage does not trust its subscription: every
``probe_interval`` it sends itself a notification and expects it back within
``probe_timeout``; a lost connection or an unanswered probe means resubscribe with
backoff, then one claim to catch what was scheduled during the gap. While disconnected
the worker polls at a short interval (``on_state(False)``).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

import anyio

from pgqueue._backoff import Backoff
from pgqueue._clock import ignore
from pgqueue._errors import describe
from pgqueue._log import LISTENER_CONNECTED, LISTENER_LOST, get_logger
from pgqueue._notifications import parse_payload
from pgqueue._signals import WorkerSignals
from pgqueue.store import Notifications, Subscription

__all__ = ["Listener"]

_log = get_logger()


class Listener:
    """Owns the worker's subscription to the notification channel."""

    def __init__(
        self,
        *,
        store: Notifications,
        queues: tuple[str, ...],
        on_ready: Callable[[], None],
        on_job: Callable[[int], None],
        on_due: Callable[[float], None],
        on_state: Callable[[bool], None],
        probe_interval: float,
        probe_timeout: float,
        on_cancel: Callable[[int], object] = ignore,
        on_suspend: Callable[[int], object] = ignore,
        on_error: Callable[[BaseException], None] = ignore,
        signals: WorkerSignals | None = None,
    ) -> None:
        self._store = store
        self._queues = frozenset(queues)
        self._on_ready = on_ready
        self._on_job = on_job
        self._on_due = on_due
        self._on_state = on_state
        self._on_cancel = on_cancel
        self._on_suspend = on_suspend
        self._on_error = on_error
        self._probe_interval = probe_interval
        self._probe_timeout = probe_timeout
        self._token = secrets.token_hex(8)
        self._probe_seen = asyncio.Event()
        self._signals = signals or WorkerSignals()
        self.connected = False

    def _on_payload(self, payload: str) -> None:
        kind, name, at, job = parse_payload(payload)
        if kind == "j" and name in self._queues and job is not None:
            self._on_job(job)
        elif kind == "r" and name in self._queues:
            self._on_ready()
        elif kind == "d" and name in self._queues and at is not None:
            self._on_due(at)
        elif kind == "p" and name == self._token:
            self._probe_seen.set()
        elif kind == "c" and name.isdigit():
            self._on_cancel(int(name))
        elif kind == "s" and name.isdigit():
            self._on_suspend(int(name))

    async def _subscribe(self) -> Subscription:
        sub = await self._store.subscribe(self._on_payload)
        self.connected = True
        self._on_state(True)  # noqa: FBT003 - the callback takes the new state
        _log.info(LISTENER_CONNECTED, channel=self._store.channel)
        self._signals.listening.fire()
        return sub

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; reports started once LISTEN is in place.

        The first subscription retries while the database is unreachable; any other error
        (a wrong password, say) propagates, so a bad configuration fails the worker's start.
        """
        sub: Subscription | None = await self._resubscribe(first=True)
        task_status.started()
        try:
            while True:
                assert sub is not None  # noqa: S101 - set before the loop and at its end
                reason = await self._serve(sub)
                self.connected = False
                self._on_state(False)  # noqa: FBT003
                _log.warning(LISTENER_LOST, reason=reason)
                self._signals.listener_lost.fire()
                self._on_error(ConnectionError(f"LISTEN connection lost: {reason}"))
                await sub.aclose()
                sub = None  # a stop while resubscribing has nothing left to close
                sub = await self._resubscribe()
                self._on_ready()  # claim once: jobs scheduled during the gap sent no notification we saw
        finally:
            self.connected = False
            if sub is not None:
                await sub.aclose()

    async def _serve(self, sub: Subscription) -> str:
        """Return a reason once the subscription is lost or stops answering probes."""
        while True:
            with anyio.move_on_after(self._probe_interval):
                await sub.wait_lost()
                return "connection closed"
            if sub.is_lost():
                return "connection closed"
            self._probe_seen.clear()
            try:
                with anyio.fail_after(self._probe_timeout):
                    await sub.probe(f"p:{self._token}")
                    await self._probe_seen.wait()
            except Exception as exc:  # noqa: BLE001 - any failed probe means the connection is not to be trusted
                return f"probe failed: {describe(exc)}"

    async def _resubscribe(self, *, first: bool = False) -> Subscription:
        backoff = Backoff()
        while True:
            try:
                return await self._subscribe()
            except Exception as exc:
                if first and not self._store.is_unavailable(exc):
                    raise
                delay = backoff.failed()
                _log.warning(LISTENER_LOST, reason=f"connect failed: {describe(exc)}", retry_in_s=delay)
                self._on_error(exc)
                await anyio.sleep(delay)
