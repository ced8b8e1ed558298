"""``wait(job_id)``: return a job's final record when it ends, woken by a notification.

How it stays free for jobs nobody waits for: a waiter marks the live job ``awaited`` (its
one write), and only the statements that end such jobs notify (``e:<id>`` on the schema's
channel). One LISTEN subscription per scheduler serves all its waiters; it is opened by the
first waiter and closed when the last one leaves.

Order of steps, so no end is missed: subscribe, then mark. If the mark finds no live row
the job has already ended (its record is returned at once) or never existed
(:class:`JobNotFound`). If the subscription is lost while waiting, the waiter subscribes
again and marks again, which also tells it whether the job ended in the gap.

Behind PgBouncer in transaction mode (``pgbouncer=True``) no LISTEN connection can be kept,
so waiters poll the job's record every ``poll_interval`` instead, as the workers there do.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import anyio

from ._boundary import translated
from ._config import check_timeout
from ._errors import PgQueueError
from ._manage import check_id
from ._records import JobRecord
from .store import ManageStore, Subscription

__all__ = ["WaitTimeoutError", "Waiters"]


class WaitTimeoutError(PgQueueError, TimeoutError):
    """The job did not end within ``wait()``'s timeout; it goes on, and may end later."""


class Waiters:
    """The waiters of one scheduler, sharing one subscription."""

    def __init__(
        self,
        open_store: Callable[[], Awaitable[ManageStore]],
        get_job: Callable[[int], Awaitable[JobRecord]],
        schema: str,
        poll_interval: float | None = None,
    ) -> None:
        self._open = open_store
        self._poll = poll_interval
        self._schema = schema
        self._get_job = get_job
        self._events: dict[int, set[anyio.Event]] = {}
        self._sub: Subscription | None = None
        self._lock = anyio.Lock()
        self._waiting = 0
        self._closings = 0  # Scheduler.close() calls: a waiter from before one stops waiting

    def _on_payload(self, payload: str) -> None:
        kind, _, rest = payload.partition(":")
        if kind == "e" and rest.isdigit():
            for event in self._events.get(int(rest), ()):
                event.set()

    async def _subscription(self) -> Subscription:
        async with self._lock:
            if self._sub is not None and self._sub.is_lost():
                await self._sub.aclose()
                self._sub = None
            if self._sub is None:
                self._sub = await (await self._open()).subscribe(self._on_payload)
            return self._sub

    async def wait(self, job_id: int, timeout: float | None) -> JobRecord:  # noqa: ASYNC109 - the API's deadline, applied with move_on_after below
        """The record of ``job_id`` once it has ended; WaitTimeoutError after ``timeout`` s."""
        check_id(job_id)
        limit = check_timeout("timeout", timeout)
        async with translated("wait", self._schema):
            if self._poll is not None:
                return await self._poll_until_ended(job_id, limit, self._poll)
            return await self._wait(job_id, limit)

    async def _poll_until_ended(self, job_id: int, limit: float | None, every: float) -> JobRecord:
        with anyio.move_on_after(math.inf if limit is None else limit):
            while True:
                record = await self._get_job(job_id)  # JobNotFound for an unknown id
                if record.state.finished:
                    return record
                await anyio.sleep(every)
        raise WaitTimeoutError(f"job {job_id} did not end within {limit or 0:g} s")

    async def _wait(self, job_id: int, limit: float | None) -> JobRecord:
        event = anyio.Event()
        self._events.setdefault(job_id, set()).add(event)
        self._waiting += 1
        closings = self._closings
        try:
            with anyio.move_on_after(math.inf if limit is None else limit):
                while True:
                    if self._closings != closings:  # do not reopen a pool the application closed
                        raise PgQueueError(f"the scheduler was closed while waiting for job {job_id}")
                    sub = await self._subscription()
                    if not await (await self._open()).job_await(job_id):
                        return await self._get_job(job_id)  # ended already, or JobNotFound
                    if await _ended_or_lost(event, sub):
                        return await self._get_job(job_id)
            # Only the deadline gets here (the loop returns or raises otherwise); a driver's
            # own TimeoutError propagates as what it is.
            raise WaitTimeoutError(f"job {job_id} did not end within {limit or 0:g} s")
        finally:
            self._events[job_id].discard(event)
            if not self._events[job_id]:
                del self._events[job_id]
            self._waiting -= 1
            if not self._waiting:
                await self.close()

    async def close(self, *, scheduler_closing: bool = False) -> None:
        """Drop the subscription (the last waiter left, or the scheduler closes).

        When the scheduler closes, waiters still waiting wake (their subscription is gone)
        and raise instead of opening the scheduler again.
        """
        if scheduler_closing:
            self._closings += 1
        with anyio.CancelScope(shield=True):
            async with self._lock:
                sub, self._sub = self._sub, None
                if sub is not None:
                    await sub.aclose()


async def _ended_or_lost(event: anyio.Event, sub: Subscription) -> bool:
    """Wait for the job's end (True) or for the subscription to be lost (False)."""
    async with anyio.create_task_group() as tg:

        async def watch_connection() -> None:
            await sub.wait_lost()
            tg.cancel_scope.cancel()

        tg.start_soon(watch_connection)
        await event.wait()
        tg.cancel_scope.cancel()
    return event.is_set()
