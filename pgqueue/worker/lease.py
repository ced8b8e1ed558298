"""The worker's lease: its row, heartbeats, the clock offset, a lost lease, the cancel backstop.

A worker's row is the lease on every job it claims: another worker reaps it (and frees its
jobs) once it has been silent for ``dead_after`` seconds. :class:`Lease` keeps it alive and
reacts when it was lost anyway (a long pause, a partition): the jobs it held are no longer
its own, so it drops the unstarted ones, interrupts the running ones (their results would
be fenced out), logs it and registers again under a new id.

Each heartbeat also brings back the database's clock, from which :class:`Identity` keeps
this worker's clock offset (the run log's start and finish times add it), and asks which
running jobs were cancelled, in case their notification was missed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import anyio

from pgqueue._clock import Clock
from pgqueue._log import WORKER_REAPED, get_logger
from pgqueue._models import Job, Outcome
from pgqueue._signals import WorkerSignals
from pgqueue.store import WorkerStore

from .job_buffer import JobBuffer
from .results import RunStats
from .runner import Runner

__all__ = ["Identity", "Lease"]

_log = get_logger()


class Identity:
    """Who this worker is in the database, and how its clock relates to the database's.

    Only the lease changes it (registration, re-registration, heartbeats); the fetcher and
    the flusher read it on every claim and flush, so a new id takes effect at once.
    """

    __slots__ = ("clock_offset", "concurrency", "id")

    def __init__(self, concurrency: int | None = None) -> None:
        self.id = 0
        """The worker row's id (0 before registration); it fences every write."""
        self.clock_offset = 0.0
        """Seconds from this worker's clock to the database's (server minus worker)."""
        self.concurrency = concurrency
        """The worker's concurrency, stored in its row for list_workers()."""

    async def register(self, store: WorkerStore, queues: Sequence[str], clock: Clock) -> None:
        """Insert a worker row and take its id; measure the clock offset on the way."""
        before = clock.time()
        self.id, server = await store.worker_register(queues, self.concurrency)
        self.measure(before, server, clock)

    def measure(self, before: float, server: float, clock: Clock) -> None:
        """Set the offset from a server reading taken between ``before`` and now.

        The server's clock was read somewhere inside the round trip, so the true offset lies
        between ``server - after`` and ``server - before``. When 0 lies there, the clocks
        agree as far as anyone can tell (the same host, or NTP-synced hosts) and the offset
        stays 0, so run times are the worker's own readings and keep their order against the
        database's times exactly. Otherwise the midpoint is used, off by at most half a round
        trip. Refreshed at every heartbeat, so a clock that drifts or is stepped follows
        within one interval.
        """
        after = clock.time()
        low, high = server - after, server - before
        self.clock_offset = 0.0 if low <= 0.0 <= high else (low + high) / 2


class Lease:
    """The heartbeat loop of one worker."""

    def __init__(
        self,
        *,
        store: WorkerStore,
        identity: Identity,
        queues: Sequence[str],
        interval: float,
        clock: Clock,
        jobs: JobBuffer[Job],
        runners: Sequence[Runner],
        stats: RunStats,
        cancel_local: Callable[[int], object],
        suspend_local: Callable[[int], object],
        on_reregistered: Callable[[], None],
        after_healthy_beat: Callable[[], Awaitable[None]],
        report: Callable[[BaseException, str], None],
        signals: WorkerSignals,
    ) -> None:
        self._store = store
        self._identity = identity
        self._queues = queues
        self._interval = interval
        self._clock = clock
        self._jobs = jobs
        self._runners = runners
        self._stats = stats
        self._cancel_local = cancel_local
        self._suspend_local = suspend_local
        self._on_reregistered = on_reregistered
        self._after_healthy_beat = after_healthy_beat
        self._report = report
        self._signals = signals

    async def run(self) -> None:
        """Heartbeat every ``interval`` seconds until cancelled."""
        healthy = False  # our previous heartbeat went through
        while True:
            await anyio.sleep(self._interval)
            try:
                before = self._clock.time()
                server = await self._store.worker_heartbeat(self._identity.id)
                if server is None:
                    healthy = False
                    await self._lost()
                    continue
                self._identity.measure(before, server, self._clock)
                self._signals.heartbeat.fire()
                if not healthy:
                    # Back from an outage (or just started): others get one interval to
                    # heartbeat too before anyone is judged dead, or an outage longer than
                    # dead_after would make the first worker back reap all the others.
                    healthy = True
                    continue
                await self._after_healthy_beat()
                await self._cancel_backstop()
            except Exception as exc:  # noqa: BLE001 - the next beat retries; the deadline has slack
                healthy = False
                self._report(exc, "heartbeat")

    async def _cancel_backstop(self) -> None:
        """Stop running jobs whose cancel (or suspend) notification this worker missed."""
        running = [r.job.id for r in self._runners if r.job is not None]
        if running:
            for job_id, cancel in (await self._store.job_cancel_requested_many(running)).items():
                (self._cancel_local if cancel else self._suspend_local)(job_id)

    async def _lost(self) -> None:
        """Our row was reaped: nothing we hold is ours. Stop it and register again."""
        old = self._identity.id
        dropped = self._jobs.take_all()
        self._stats.outstanding -= len(dropped)
        stopped = sum(r.interrupt(Outcome.INTERRUPTED) for r in self._runners)
        await self._identity.register(self._store, self._queues, self._clock)
        self._signals.lease_lost.fire()
        self._on_reregistered()
        _log.error(
            WORKER_REAPED,
            worker_id=old,
            new_worker_id=self._identity.id,
            dropped_unstarted=len(dropped),
            interrupted=stopped,
            note="this worker was reaped (paused or cut off longer than dead_after); registered again",
        )
