"""The public :class:`Worker`: lifecycle and wiring; the work is done by the stages in this package.

Data flow, one file per stage::

    listener ─▶ fetcher ─▶ job_buffer ─▶ runner ×concurrency ─▶ result_buffer ─▶ flusher
                                             ▲ watchdog (timeouts)
    lease (heartbeat, lost lease, cancel backstop) · maintenance: reaper, vacuum

Stages do not call each other; they share the buffers and a few callbacks wired here,
once, in order, by :func:`.stages.build`. Nothing is changed on a stage after it is built.

Start (``await tg.start(worker.run)`` or ``await worker.run()``): check the schema version
and register the worker row (opening the connections the claims and the flushes keep
meanwhile), retrying with backoff while the database is unreachable
(each failure goes to ``on_error`` and the log); a missing or newer schema, a wrong
password or an unknown database fail at once. Then LISTEN, start the stages, report
started.

Stop (``await worker.shutdown(grace)``): stop claiming; hand back claimed jobs that have
not started; let running jobs finish for up to ``grace`` seconds, then interrupt them
(recorded as ``interrupted``, put back to run again, not counted as errors); write the
last results (shielded); delete the worker row, which releases anything still held.
When ``run()`` is cancelled instead (a hard stop), running jobs are interrupted at once and
the same clean-up runs shielded, with a deadline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import anyio

from pgqueue._clock import Clock, SystemClock
from pgqueue._config import WorkerConfig
from pgqueue._context import CURRENT_SCHEDULER, reset_scheduler
from pgqueue._errors import describe, unwrap_group
from pgqueue._log import WORKER_ERROR, WORKER_REGISTERED, WORKER_STOPPED, get_logger
from pgqueue._models import Job, Outcome
from pgqueue._registry import Registry
from pgqueue._signals import Signal, WorkerSignals
from pgqueue.store import Held, WorkerBackend

from .collector import tune_collector
from .job_buffer import JobBuffer
from .lease import Identity
from .registration import register
from .results import RunStats
from .runner import Runner
from .stages import Stages, build

if TYPE_CHECKING:
    from pgqueue._scheduler import Scheduler

__all__ = ["Worker"]

CLEANUP_DEADLINE_S = 10.0  # shielded clean-up (release, last flush, deregister) gives up after this
_log = get_logger()


class Worker:
    """Claims and runs jobs from some queues. Build it with ``scheduler.worker(...)``."""

    def __init__(
        self,
        *,
        open_store: Callable[[], Awaitable[WorkerBackend]],
        registry: Registry,
        config: WorkerConfig,
        clock: Clock | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.config = config
        self._scheduler = scheduler  # what current_scheduler() returns in its handlers
        self._open_store = open_store
        self._registry = registry
        self._clock: Clock = clock or SystemClock()
        self._stop = anyio.Event()
        self._done = anyio.Event()
        self._grace = config.shutdown_grace
        self._running = False
        self._identity = Identity(config.concurrency)
        self._stages: Stages | None = None
        self.stats = RunStats()
        """Counters the stages keep (jobs outstanding and finished)."""
        self.signals = WorkerSignals()
        """Events the stages fire (claimed, flushed, listener_lost…): tests wait on them."""

    # -- read-only state for tests, metrics and the CLI ----------------------------------

    @property
    def id(self) -> int:
        """The worker's row id while it runs (0 before)."""
        return self._identity.id

    @property
    def clock_offset(self) -> float:
        """Seconds from this worker's clock to the database's, measured at each heartbeat."""
        return self._identity.clock_offset

    @property
    def claims(self) -> int:
        """Claim statements issued so far."""
        return self.signals.claimed.count

    @property
    def flushes(self) -> int:
        """Result flushes written so far."""
        return self.signals.flushed.count

    @property
    def listener_connects(self) -> int:
        """Successful LISTEN connects (1 plus reconnects)."""
        return self.signals.listening.count

    @property
    def reregistrations(self) -> int:
        """Times the lease was lost and the worker registered again."""
        return self.signals.lease_lost.count

    @property
    def timeouts(self) -> int:
        """Runs interrupted because they passed their timeout."""
        return self._stages.watchdog.timeouts if self._stages else 0

    @property
    def claim_failures(self) -> int:
        """Claims that failed (each retried with backoff)."""
        return self.signals.claim_failed.count

    @property
    def flush_failures(self) -> int:
        """Flushes that failed (their results kept for the retry)."""
        return self.signals.flush_failed.count

    @property
    def running(self) -> int:
        """Jobs in their handlers now (read by scanning the runners: nothing is counted per job)."""
        st = self._stages
        return sum(r.job is not None for r in st.runners) if st else 0

    @property
    def held(self) -> int:
        """Jobs claimed and not finished: running, or waiting for a runner."""
        return self.stats.outstanding

    @property
    def results_buffered(self) -> int:
        """Finished runs waiting for a flush."""
        return len(self._stages.results) if self._stages else 0

    @property
    def is_leader(self) -> bool:
        """Whether this worker is the schema's maintenance leader now (see pgqueue.maintenance)."""
        leader = self._stages.leader if self._stages else None
        return leader is not None and leader.is_leader

    @property
    def jobs_reaped(self) -> int:
        """Runs of dead workers this worker's reaper ended and put back."""
        return self._stages.reaper.jobs_released if self._stages else 0

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
        return self._request(
            job_id,
            self.signals.cancel_noted,
            lambda r: r.interrupt(Outcome.CANCELLED, job_id),
            lambda jobs: jobs.cancelled,  # skipped by the runner that pops it
        )

    def suspend_local(self, job_id: int) -> bool:
        """Tell ``job_id``'s handler to stop at its next checkpoint, if this worker holds it."""
        return self._request(
            job_id, self.signals.suspend_noted, _ask_to_suspend(job_id), lambda jobs: jobs.suspending
        )

    def _request(
        self,
        job_id: int,
        noted: Signal,
        running: Callable[[Runner], bool],
        buffered: Callable[[JobBuffer[Job]], set[int]],
    ) -> bool:
        """Apply a request for one job: to the runner that runs it (True), else noted for later.

        ``buffered`` picks the job buffer's set that the runner starting the job reads.
        """
        st = self._stages
        if st is None:
            return False
        noted.fire()
        if any(running(r) for r in st.runners):
            return True
        if st.jobs.holds(job_id):
            buffered(st.jobs).add(job_id)
        return False

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`shutdown` or cancellation; reports started once claiming begins."""
        if self._running or self._done.is_set():
            raise RuntimeError("a Worker runs once; build a new one with scheduler.worker()")
        self._running = True
        # Once for the worker: every stage task started below inherits this context, so
        # handlers see it with no per-job cost (current_scheduler()).
        scheduler = None if self._scheduler is None else CURRENT_SCHEDULER.set(self._scheduler)
        try:
            store = await self._open_store()
            held = (store.hold(), store.hold())  # the claims' and the flushes' (None: a small pool)
            try:
                registered = await register(
                    store,
                    identity=self._identity,
                    queues=self.config.queues,
                    clock=self._clock,
                    held=held,
                    stop=self._stop,
                    report=self._report,
                )
                if registered:
                    await self._run_registered(store, held, task_status)
                # else: shutdown() while the database was still unreachable
            finally:
                await _release(held)  # after the clean-up's last flush, however the run ended
        except BaseExceptionGroup as group:
            # The stages' task groups wrap what they raise; callers get the error itself.
            raise unwrap_group(group) from None
        finally:
            if scheduler is not None:
                reset_scheduler(scheduler)
            self._running = False
            self._done.set()

    async def _run_registered(
        self,
        store: WorkerBackend,
        held: tuple[Held | None, Held | None],
        task_status: anyio.abc.TaskStatus[None],
    ) -> None:
        """Build the stages and serve until stopped; then the clean-up, whatever ended it."""
        if self.config.freeze_gc:
            tune_collector()  # once per process, before the first claim (collector.py)
        log = _log.bind(worker_id=self.id)
        log.info(WORKER_REGISTERED, queues=list(self.config.queues), concurrency=self.config.concurrency)
        metrics = self.config.metrics
        tally = None if metrics is None else metrics.attach(self, store, self.config.queues)
        try:
            self._stages = build(
                store=store,
                config=self.config,
                registry=self._registry,
                clock=self._clock,
                identity=self._identity,
                signals=self.signals,
                stats=self.stats,
                cancel_local=self.cancel_local,
                suspend_local=self.suspend_local,
                report=self._report,
                held=held,
                tally=tally,
            )
            await self._serve(self._stages, task_status)
        finally:
            try:
                await self._cleanup(store)
            finally:  # a clean-up that fails must not leave the worker's gauges on scrapes
                if metrics is not None and tally is not None:
                    metrics.detach(tally)
            log.info(WORKER_STOPPED, jobs_run=self.stats.finished)

    def _report(self, exc: BaseException, action: str, **fields: object) -> None:
        _log.warning(WORKER_ERROR, worker_id=self.id, action=action, error=describe(exc), **fields)
        hook = self.config.on_error
        if hook is not None:
            try:
                hook(exc)
            except BaseException as hook_exc:  # noqa: BLE001 - a broken hook must not stop the worker (sync: no cancellation lands here)
                _log.error(WORKER_ERROR, worker_id=self.id, action="on_error hook", error=repr(hook_exc))

    async def _serve(self, st: Stages, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with anyio.create_task_group() as services:
            if st.listener is not None:
                await services.start(st.listener.run)
            await services.start(st.flusher.run)
            await services.start(st.watchdog.run, st.runners)
            services.start_soon(st.lease.run)
            if st.leader is not None:
                services.start_soon(st.leader.run)
            services.start_soon(st.progress.run)
            fetch_scope = anyio.CancelScope()
            idle = _Countdown(len(st.runners))
            async with anyio.create_task_group() as work:
                # The fetcher first: its first claim is on the wire while the runners start.
                work.start_soon(_in_scope, fetch_scope, st.fetcher.run)
                for r in st.runners:
                    work.start_soon(idle.run, r.run)
                task_status.started()
                await self._stop.wait()
                fetch_scope.cancel()
                await self._release_unstarted(st)
                st.jobs.close()  # runners finish the job in hand, then return
                with anyio.move_on_after(self._grace):
                    await idle.done.wait()
                for r in st.runners:  # grace is over: interrupt what still runs (put back, not failed)
                    r.interrupt(Outcome.INTERRUPTED)
            await st.flusher.drain(CLEANUP_DEADLINE_S)
            services.cancel_scope.cancel()

    async def _release_unstarted(self, st: Stages) -> None:
        jobs = st.jobs.take_all()
        if not jobs:
            return
        self.stats.outstanding -= len(jobs)
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_DEADLINE_S):
            try:
                await st.store.job_release_many(self.id, [j.id for j in jobs])
            except Exception as exc:  # noqa: BLE001 - deregistration (or a reaper) releases them anyway
                self._report(exc, "release")

    async def _cleanup(self, store: WorkerBackend) -> None:
        """Shielded: write what finished, give back what did not, drop the worker row."""
        with anyio.CancelScope(shield=True):
            st = self._stages
            if st is not None:
                await self._release_unstarted(st)
                await st.flusher.drain(CLEANUP_DEADLINE_S)
            with anyio.move_on_after(CLEANUP_DEADLINE_S):
                try:
                    await store.worker_deregister(self.id)
                except Exception as exc:  # noqa: BLE001 - reaping by a live worker covers this
                    self._report(exc, "deregister")


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


async def _release(held: Sequence[Held | None]) -> None:
    """Give the held connections back, shielded, each within the clean-up deadline."""
    with anyio.CancelScope(shield=True):
        for h in held:
            if h is not None:
                with anyio.move_on_after(CLEANUP_DEADLINE_S):
                    await h.release()


async def _in_scope(scope: anyio.CancelScope, fn: Callable[[], Awaitable[None]]) -> None:
    with scope:
        await fn()


def _ask_to_suspend(job_id: int) -> Callable[[Runner], bool]:
    def ask(runner: Runner) -> bool:
        job = runner.job
        if job is None or job.id != job_id:
            return False
        job._request_suspend()  # noqa: SLF001 - the worker's step
        return True

    return ask
