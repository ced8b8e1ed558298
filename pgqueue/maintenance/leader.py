"""The maintenance leader: one worker per schema runs the schema's housekeeping.

Every worker that takes part (``maintenance=True``, the default) tries for the schema's
leader lock every ``interval`` seconds; the one that holds it runs the duties: reaping
dead workers (after each of its healthy heartbeats), vacuuming the hot table, enqueuing
periodic jobs and managing the partitions of ``job_runs``. The lock is a session advisory
lock on a connection the leader keeps (:meth:`pgqueue.store.WorkerStore.leader_lock`), so a
leader that dies or loses its connection hands over within one ``interval`` of the server
noticing; the leader checks its lock every ``interval`` and stops its duties the moment it
cannot vouch for it.

The lock saves work; it does not make anything correct. Every duty is safe when two
processes run it at once (a handover while the old leader's statement is in flight):
reaping locks the rows it frees, periodic ticks are claimed by a compare-and-set on their
row, partition DDL takes a transaction lock, and the vacuum its own session lock. That is
also why, where session locks cannot work (PgBouncer in transaction mode) or no connection
can be spared for one (an application pool under four connections), every worker runs the
duties itself (``elect=False``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import anyio

from pgqueue._log import LEADER_ELECTED, LEADER_STEPPED_DOWN, get_logger
from pgqueue._signals import WorkerSignals
from pgqueue.store import LeaderLock, WorkerStore

__all__ = ["Duty", "Leader", "repeat"]

Duty = Callable[[], Coroutine[Any, Any, None]]
"""A maintenance loop that runs until cancelled and reports its own errors."""

_log = get_logger()


class Leader:
    """One worker's part in the election, and the duties it runs while it leads."""

    def __init__(
        self,
        *,
        store: WorkerStore,
        duties: Sequence[Duty],
        interval: float,
        elect: bool,
        self_id: Callable[[], int],
        report: Callable[[BaseException, str], None],
        signals: WorkerSignals,
    ) -> None:
        self._store = store
        self._duties = duties
        self._interval = interval
        self._elect = elect
        self._self_id = self_id
        self._report = report
        self._signals = signals
        self.is_leader = False
        """True while this worker holds the lock (always, with ``elect=False``)."""

    async def after_beat(self, reap: Callable[[], Awaitable[None]]) -> None:
        """Reap after a healthy heartbeat, if this worker leads (the lease calls this)."""
        if self.is_leader:
            await reap()

    async def run(self) -> None:
        """Try for the lock every ``interval`` seconds and lead while it is held, until cancelled."""
        if not self._elect:
            self.is_leader = True
            await self._serve()
            return
        while True:
            lock: LeaderLock | None = None
            try:
                lock = await self._store.leader_lock()
            except Exception as exc:  # noqa: BLE001 - the database is down: try again next interval
                self._report(exc, "leader election")
            if lock is None:
                await anyio.sleep(self._interval)
                continue
            try:
                await self._lead(lock)
            finally:
                self.is_leader = False
                await lock.release()  # shielded inside: a worker stopping hands over at once

    async def _lead(self, lock: LeaderLock) -> None:
        self.is_leader = True
        _log.info(LEADER_ELECTED, worker_id=self._self_id())
        self._signals.leader_elected.fire()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._serve)
            while True:
                await anyio.sleep(self._interval)
                if not await lock.check(within=self._interval):
                    break
            tg.cancel_scope.cancel()
        # Only a lost lock gets here (cancellation passes through): the session is gone or
        # does not answer, and another worker may already lead.
        _log.warning(LEADER_STEPPED_DOWN, worker_id=self._self_id(), reason="lock lost or unanswered")
        self._signals.leader_lost.fire()

    async def _serve(self) -> None:
        async with anyio.create_task_group() as tg:
            for duty in self._duties:
                tg.start_soon(duty)


def repeat(
    step: Callable[[], Awaitable[float | None]],
    interval: float,
    action: str,
    report: Callable[[BaseException, str], None],
    *,
    first_after: float = 0.0,
) -> Duty:
    """A duty that runs ``step`` after ``first_after`` seconds, then after each delay it returns.

    A step returning None runs again after ``interval``. An error is reported and the step
    runs again after ``interval``: maintenance is best effort, and the next round does
    whatever this one could not.
    """

    async def loop() -> None:
        await anyio.sleep(first_after)
        while True:
            try:
                delay = await step()
            except Exception as exc:  # noqa: BLE001 - see above
                report(exc, action)
                delay = None
            await anyio.sleep(interval if delay is None else max(delay, 0.0))

    return loop
