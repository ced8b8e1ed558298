"""The public :class:`Worker`: one anyio task group that owns the stages and their stop order.

Data flow: listener → fetcher → job buffer → runners → result buffer → flusher. Stages do
not call each other; they share the buffers and a few callbacks wired here. The worker
also runs the heartbeat (lease, reaping of dead workers, cancel backstop) and the
watchdog (timeouts).

Start (``await tg.start(worker.run)`` or ``await worker.run()``): check the schema version
and register the worker row, retrying with backoff while the database is unreachable
(each failure goes to ``on_error`` and the log); a missing or newer schema, a wrong
password or an unknown database fail at once. Then LISTEN, start the stages, report
started.

Stop (``await worker.shutdown(grace)``): stop claiming; hand back claimed jobs that have
not started; let running jobs finish for up to ``grace`` seconds, then interrupt them
(recorded as ``interrupted``, put back to run again, not counted as errors); write the
last results (shielded); delete the worker row, which releases anything still held.
When ``run()`` is cancelled instead (a hard stop), running jobs are interrupted at once and
the same clean-up runs shielded, with a deadline.

Lost lease: if the heartbeat finds the worker's row gone (another worker reaped it after
a long pause or a partition), the jobs it held are no longer its own: it drops the
unstarted ones, interrupts the running ones (their results would be fenced out anyway),
logs it and registers again under a new id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from ._buffer import JobBuffer, ResultBuffer
from ._clock import Clock, SystemClock
from ._config import WorkerConfig
from ._errors import SchemaError, describe, unwrap_group
from ._fetcher import Fetcher
from ._flusher import Flusher
from ._listener import Listener
from ._log import (
    JOBS_VACUUMED,
    WORKER_ERROR,
    WORKER_REAPED,
    WORKER_REGISTERED,
    WORKER_STOPPED,
    WORKERS_REAPED,
    debug_enabled,
    get_logger,
)
from ._migrate import check_schema_version
from ._models import Job, Outcome
from ._registry import Registry
from ._runner import Runner, RunResult, RunStats, Watchdog
from ._store import HeldConnection, Store, can_hold, is_unavailable

__all__ = ["Worker"]

CLEANUP_DEADLINE_S = 10.0  # shielded clean-up (release, last flush, deregister) gives up after this
START_RETRY_MAX_S = 5.0
VACUUM_CHECK_S = 1.0  # how often a worker looks at the hot table's dead tuples (one pg_stat read)
_log = get_logger()


class Worker:
    """Claims and runs jobs from some queues. Build it with ``scheduler.worker(...)``."""

    def __init__(
        self,
        *,
        open_store: Callable[[], Awaitable[Store]],
        registry: Registry,
        config: WorkerConfig,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self._open_store = open_store
        self._registry = registry
        self._clock: Clock = clock or SystemClock()
        self._stop = anyio.Event()
        self._done = anyio.Event()
        self._grace = config.shutdown_grace
        self._running = False
        self._id = 0
        self.stats = RunStats()
        self._fetcher: Fetcher | None = None
        self._flusher: Flusher | None = None
        self._listener: Listener | None = None
        self._watchdog: Watchdog | None = None
        self._jobs: JobBuffer[Job] | None = None
        self._runners: list[Runner] = []
        self._held: tuple[HeldConnection, ...] = ()
        self.reregistrations = 0  # times the lease was lost and the worker registered again
        self.clock_offset = 0.0
        """Seconds from this worker's clock to the database's (server minus worker), measured
        at registration and each heartbeat; the run log's start and finish times add it."""

    # -- read-only state for tests, metrics and the CLI ----------------------------------

    @property
    def id(self) -> int:
        """The worker's row id while it runs (0 before)."""
        return self._id

    @property
    def claims(self) -> int:
        """Claim statements issued so far."""
        return self._fetcher.claims if self._fetcher else 0

    @property
    def flushes(self) -> int:
        """Result flushes written so far."""
        return self._flusher.flushes if self._flusher else 0

    @property
    def listener_connects(self) -> int:
        """Successful LISTEN connects (1 plus reconnects)."""
        return self._listener.connects if self._listener else 0

    @property
    def timeouts(self) -> int:
        """Runs interrupted because they passed their timeout."""
        return self._watchdog.timeouts if self._watchdog else 0

    # -- control ---------------------------------------------------------------------------

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop gracefully and wait until :meth:`run` has returned.

        Running jobs get ``grace`` seconds (default ``shutdown_grace``) to finish; then they
        are interrupted and put back to run again.
        """
        if grace is not None:
            self._grace = max(0.0, grace)
        self._stop.set()
        if self._running:
            await self._done.wait()

    def cancel_local(self, job_id: int) -> bool:
        """Stop ``job_id`` if this worker runs it or holds it unstarted (a cancel notification)."""
        for r in self._runners:
            if r.interrupt(Outcome.CANCELLED, job_id):
                return True
        if self._jobs is not None and self._jobs.holds(job_id):
            self._jobs.cancelled.add(job_id)  # skipped by the runner that pops it
        return False

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`shutdown` or cancellation; reports started once claiming begins."""
        if self._running or self._done.is_set():
            raise RuntimeError("a Worker runs once; build a new one with scheduler.worker()")
        self._running = True
        try:
            store = await self._open_store()
            if not await self._register_with_retry(store):
                return  # shutdown() while the database was still unreachable
            log = _log.bind(worker_id=self._id)
            log.info(WORKER_REGISTERED, queues=list(self.config.queues), concurrency=self.config.concurrency)
            try:
                await self._serve(store, task_status)
            finally:
                await self._cleanup(store)
                log.info(WORKER_STOPPED, jobs_run=self.stats.finished)
        except BaseExceptionGroup as group:
            # The stages' task groups wrap what they raise; callers get the error itself.
            raise unwrap_group(group) from None
        finally:
            self._running = False
            self._done.set()

    async def _register_with_retry(self, store: Store) -> bool:
        """Check the schema and register, waiting out a database that is down or restarting.

        Returns False when :meth:`shutdown` came first (nothing was registered).
        """
        delay = 0.1
        while not self._stop.is_set():
            try:
                await check_schema_version(store)
                await self._register(store)
            except SchemaError:
                raise
            except Exception as exc:
                if not is_unavailable(exc):
                    raise  # wrong password, unknown database, a bug: waiting will not help
                self._report(exc, "start", retry_in_s=delay)
                with anyio.move_on_after(delay):
                    await self._stop.wait()
                delay = min(START_RETRY_MAX_S, delay * 2)
                continue
            return True
        return False

    async def _register(self, store: Store) -> None:
        before = self._clock.time()
        self._id, server = await store.worker_register(self.config.queues)
        self._measure_offset(before, server)

    def _measure_offset(self, before: float, server: float) -> None:
        """Set :attr:`clock_offset` from a server reading taken between ``before`` and now.

        The server's clock is read mid-round-trip, so the estimate is off by at most half a
        round trip; it is refreshed at every heartbeat, so a clock that drifts or is stepped
        follows within one interval.
        """
        self.clock_offset = server - (before + self._clock.time()) / 2

    def _report(self, exc: BaseException, action: str, **fields: object) -> None:
        _log.warning(WORKER_ERROR, worker_id=self._id, action=action, error=describe(exc), **fields)
        hook = self.config.on_error
        if hook is not None:
            try:
                hook(exc)
            except BaseException as hook_exc:  # noqa: BLE001 - a broken hook must not stop the worker (sync: no cancellation lands here)
                _log.error(WORKER_ERROR, worker_id=self._id, action="on_error hook", error=repr(hook_exc))

    async def _serve(self, store: Store, task_status: anyio.abc.TaskStatus[None]) -> None:
        cfg = self.config
        jobs: JobBuffer[Job] = JobBuffer()
        results: ResultBuffer[RunResult] = ResultBuffer(
            flush_max=cfg.flush_max,
            flush_age=cfg.flush_age,
            high_water=cfg.buffer_max,
            monotonic=self._clock.monotonic,
        )
        # Claims and flushes each keep a connection, when the pool can spare them.
        self._held = (HeldConnection(store.pool), HeldConnection(store.pool)) if can_hold(store.pool) else ()
        fetcher = Fetcher(
            held=self._held[0] if self._held else None,
            store=store,
            config=cfg,
            jobs=jobs,
            results=results,
            stats=self.stats,
            clock=self._clock,
            on_error=lambda exc: self._report(exc, "claim"),
        )
        fetcher.worker_id = self._id
        flusher = Flusher(
            held=self._held[1] if self._held else None,
            store=store,
            results=results,
            worker_id=lambda: self._id,
            clock_offset=lambda: self.clock_offset,
            should_log_run=cfg.should_log_run,
            on_put_back=fetcher.note_due,
            batch_max=cfg.buffer_max,
            on_error=lambda exc: self._report(exc, "flush"),
        )
        limiter = anyio.CapacityLimiter(cfg.concurrency)
        runners: list[Runner] = []
        watchdog = Watchdog(runners, self._clock)
        runners += [
            Runner(
                registry=self._registry,
                jobs=jobs,
                results=results,
                stats=self.stats,
                clock=self._clock,
                on_capacity=fetcher.on_capacity,
                thread_limiter=limiter,
                arm_deadline=watchdog.arm,
            )
            for _ in range(cfg.concurrency)
        ]
        self._fetcher, self._flusher, self._watchdog, self._jobs, self._runners = (
            fetcher,
            flusher,
            watchdog,
            jobs,
            runners,
        )
        fetcher.on_batch = lambda: _refresh_debug(runners)
        async with anyio.create_task_group() as services:
            if cfg.listen:
                listener = Listener(
                    store=store,
                    queues=cfg.queues,
                    on_ready=fetcher.notify_ready,
                    on_due=fetcher.note_due,
                    on_cancel=self.cancel_local,
                    on_state=fetcher.set_listening,
                    on_error=lambda exc: self._report(exc, "listen"),
                    probe_interval=cfg.listen_probe_interval,
                    probe_timeout=min(5.0, cfg.listen_probe_interval / 2),
                )
                self._listener = listener
                await services.start(listener.run)
            else:
                fetcher.poll_only = True
            await services.start(flusher.run)
            await services.start(watchdog.run)
            services.start_soon(self._heartbeat, store)
            if cfg.vacuum_min_dead:
                services.start_soon(self._maintain, store)
            fetch_scope = anyio.CancelScope()
            idle = _Countdown(len(runners))
            async with anyio.create_task_group() as work:
                for r in runners:
                    work.start_soon(idle.run, r.run)
                work.start_soon(_in_scope, fetch_scope, fetcher.run)
                task_status.started()
                await self._stop.wait()
                fetch_scope.cancel()
                await self._release_unstarted(store)
                jobs.close()  # runners finish the job in hand, then return
                with anyio.move_on_after(self._grace):
                    await idle.done.wait()
                for r in runners:  # grace is over: interrupt what still runs (put back, not failed)
                    r.interrupt(Outcome.INTERRUPTED)
            await flusher.drain(CLEANUP_DEADLINE_S)
            services.cancel_scope.cancel()

    async def _release_unstarted(self, store: Store) -> None:
        jobs = self._jobs.take_all() if self._jobs is not None else []
        if not jobs:
            return
        self.stats.outstanding -= len(jobs)
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_DEADLINE_S):
            try:
                await store.job_release_many(self._id, [j.id for j in jobs])
            except Exception as exc:  # noqa: BLE001 - deregistration (or a reaper) releases them anyway
                self._report(exc, "release")

    async def _cleanup(self, store: Store) -> None:
        """Shielded: write what finished, give back what did not, drop the worker row."""
        with anyio.CancelScope(shield=True):
            await self._release_unstarted(store)
            if self._flusher is not None:
                await self._flusher.drain(CLEANUP_DEADLINE_S)
            for held in self._held:
                with anyio.move_on_after(CLEANUP_DEADLINE_S):
                    await held.release()
            with anyio.move_on_after(CLEANUP_DEADLINE_S):
                try:
                    await store.worker_deregister(self._id)
                except Exception as exc:  # noqa: BLE001 - reaping by a live worker covers this
                    self._report(exc, "deregister")

    async def _heartbeat(self, store: Store) -> None:
        """Keep the lease, reap dead workers, and catch cancel requests a notification missed."""
        cfg = self.config
        healthy = False  # our previous heartbeat went through
        while True:
            await anyio.sleep(cfg.heartbeat_interval)
            try:
                before = self._clock.time()
                server = await store.worker_heartbeat(self._id)
                if server is None:
                    healthy = False
                    await self._lease_lost(store)
                    continue
                self._measure_offset(before, server)
                if not healthy:
                    # Back from an outage (or just started): others get one interval to
                    # heartbeat too before anyone is judged dead, or an outage longer than
                    # dead_after would make the first worker back reap all the others.
                    healthy = True
                    continue
                released, reaped = await store.worker_reap(cfg.dead_after, self._id)
                if reaped:
                    _log.warning(WORKERS_REAPED, worker_id=self._id, workers=reaped, jobs_released=released)
                    if self._fetcher is not None:
                        self._fetcher.notify_ready()
                held = [r.job.id for r in self._runners if r.job is not None]
                if held:
                    for job_id in await store.job_cancel_requested_many(held):
                        self.cancel_local(job_id)
            except Exception as exc:  # noqa: BLE001 - the next beat retries; the deadline has slack
                healthy = False
                self._report(exc, "heartbeat")

    async def _maintain(self, store: Store) -> None:
        """Vacuum the hot table when it has piled up dead tuples.

        Its own task: VACUUM can take seconds on a large backlog and must never delay a heartbeat.
        """
        while True:
            await anyio.sleep(min(self.config.heartbeat_interval, VACUUM_CHECK_S))
            try:
                removed = await store.jobs_vacuum_if_needed(self.config.vacuum_min_dead)
            except Exception as exc:  # noqa: BLE001 - maintenance is best effort; autovacuum remains
                self._report(exc, "vacuum")
                continue
            if removed is not None:
                _log.info(JOBS_VACUUMED, worker_id=self._id, dead_tuples=removed)

    async def _lease_lost(self, store: Store) -> None:
        """Our row was reaped: nothing we hold is ours. Stop it and register again."""
        old = self._id
        dropped = self._jobs.take_all() if self._jobs is not None else []
        self.stats.outstanding -= len(dropped)
        stopped = sum(r.interrupt(Outcome.INTERRUPTED) for r in self._runners)
        await self._register(store)
        self.reregistrations += 1
        if self._fetcher is not None:
            self._fetcher.worker_id = self._id
            self._fetcher.notify_ready()
        _log.error(
            WORKER_REAPED,
            worker_id=old,
            new_worker_id=self._id,
            dropped_unstarted=len(dropped),
            interrupted=stopped,
            note="this worker was reaped (paused or cut off longer than dead_after); registered again",
        )


class _Countdown:
    """Sets ``done`` once every task run through :meth:`run` has returned."""

    def __init__(self, n: int) -> None:
        self._left = n
        self.done = anyio.Event()

    async def run(self, fn: Callable[[], Awaitable[None]]) -> None:
        try:
            await fn()
        finally:
            self._left -= 1
            if self._left == 0:
                self.done.set()


def _refresh_debug(runners: list[Runner]) -> None:
    on = debug_enabled()
    for r in runners:
        r.debug = on


async def _in_scope(scope: anyio.CancelScope, fn: Callable[[], Awaitable[None]]) -> None:
    with scope:
        await fn()
