"""The public :class:`Worker`: one anyio task group that owns the stages and their stop order.

Data flow: listener → fetcher → job buffer → runners → result buffer → flusher. Stages do
not call each other; they share the buffers and a few callbacks wired here.

Start (``await tg.start(worker.run)`` or ``await worker.run()``): check the schema version,
register the worker row, connect LISTEN (a bad DSN or an unmigrated schema fails here,
inside ``start``), then start the flusher, heartbeat, runners and fetcher.

Stop (``await worker.shutdown()``): stop claiming; hand back claimed jobs that have not
started; let running jobs finish; write the last results (shielded); delete the worker
row, which releases anything still held. When ``run()`` is cancelled instead, the same
clean-up runs shielded with a deadline: completed results are written, unfinished jobs
are released for another worker, nothing stays owned by a worker that is gone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from ._buffer import JobBuffer, ResultBuffer
from ._clock import Clock, SystemClock
from ._config import WorkerConfig
from ._fetcher import Fetcher
from ._flusher import Flusher
from ._listener import Listener
from ._log import WORKER_ERROR, WORKER_REGISTERED, WORKER_STOPPED, debug_enabled, get_logger
from ._migrate import check_schema_version
from ._models import Job
from ._registry import Registry
from ._runner import Runner, RunResult, RunStats
from ._store import Store

__all__ = ["Worker"]

CLEANUP_DEADLINE_S = 10.0  # shielded clean-up (release, last flush, deregister) gives up after this
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
        self._running = False
        self._id = 0
        self.stats = RunStats()
        self._fetcher: Fetcher | None = None
        self._flusher: Flusher | None = None
        self._listener: Listener | None = None
        self._jobs: JobBuffer[Job] | None = None

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

    async def shutdown(self) -> None:
        """Stop gracefully and wait until :meth:`run` has returned."""
        self._stop.set()
        if self._running:
            await self._done.wait()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`shutdown` or cancellation; reports started once claiming begins."""
        if self._running or self._done.is_set():
            raise RuntimeError("a Worker runs once; build a new one with scheduler.worker()")
        self._running = True
        try:
            store = await self._open_store()
            await check_schema_version(store)
            self._id = await store.worker_register(self.config.queues)
            log = _log.bind(worker_id=self._id)
            log.info(WORKER_REGISTERED, queues=list(self.config.queues), concurrency=self.config.concurrency)
            try:
                await self._serve(store, task_status)
            finally:
                await self._cleanup(store)
                log.info(WORKER_STOPPED, jobs_run=self.stats.finished)
        finally:
            self._running = False
            self._done.set()

    async def _serve(self, store: Store, task_status: anyio.abc.TaskStatus[None]) -> None:
        cfg = self.config
        jobs: JobBuffer[Job] = JobBuffer()
        results: ResultBuffer[RunResult] = ResultBuffer(
            flush_max=cfg.flush_max,
            flush_age=cfg.flush_age,
            high_water=cfg.buffer_max,
            monotonic=self._clock.monotonic,
        )
        fetcher = Fetcher(
            store=store, config=cfg, jobs=jobs, results=results, stats=self.stats, clock=self._clock
        )
        fetcher.worker_id = self._id
        flusher = Flusher(
            store=store,
            results=results,
            worker_id=lambda: self._id,
            should_log_run=cfg.should_log_run,
            on_put_back=fetcher.note_due,
            batch_max=cfg.flush_max,
        )
        listener = Listener(
            store=store,
            queues=cfg.queues,
            on_ready=fetcher.notify_ready,
            on_due=fetcher.note_due,
            on_state=fetcher.set_listening,
        )
        self._fetcher, self._flusher, self._listener = fetcher, flusher, listener
        self._jobs = jobs
        limiter = anyio.CapacityLimiter(cfg.concurrency)
        runners = [
            Runner(
                registry=self._registry,
                jobs=jobs,
                results=results,
                stats=self.stats,
                clock=self._clock,
                on_capacity=fetcher.on_capacity,
                thread_limiter=limiter,
            )
            for _ in range(cfg.concurrency)
        ]
        fetcher.on_batch = lambda: _refresh_debug(runners)
        async with anyio.create_task_group() as services:
            await services.start(listener.run)
            await services.start(flusher.run)
            services.start_soon(self._heartbeat, store)
            fetch_scope = anyio.CancelScope()
            async with anyio.create_task_group() as work:
                for r in runners:
                    work.start_soon(r.run)
                work.start_soon(_in_scope, fetch_scope, fetcher.run)
                task_status.started()
                await self._stop.wait()
                fetch_scope.cancel()
                await self._release_unstarted(store)
                jobs.close()  # runners finish the job in hand, then return
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
            except Exception as exc:  # noqa: BLE001 - deregistration releases them anyway
                _log.warning(WORKER_ERROR, worker_id=self._id, action="release", error=repr(exc))

    async def _cleanup(self, store: Store) -> None:
        """Shielded: write what finished, give back what did not, drop the worker row."""
        with anyio.CancelScope(shield=True):
            await self._release_unstarted(store)
            if self._flusher is not None:
                await self._flusher.drain(CLEANUP_DEADLINE_S)
            with anyio.move_on_after(CLEANUP_DEADLINE_S):
                try:
                    await store.worker_deregister(self._id)
                except Exception as exc:  # noqa: BLE001 - reaping by a live worker covers this
                    _log.warning(WORKER_ERROR, worker_id=self._id, action="deregister", error=repr(exc))

    async def _heartbeat(self, store: Store) -> None:
        while True:
            await anyio.sleep(self.config.heartbeat_interval)
            try:
                alive = await store.worker_heartbeat(self._id)
            except Exception as exc:  # noqa: BLE001 - the next beat retries; the deadline has slack
                _log.warning(WORKER_ERROR, worker_id=self._id, action="heartbeat", error=repr(exc))
                continue
            if not alive:
                _log.error(WORKER_ERROR, worker_id=self._id, action="heartbeat", error="worker row is gone")


def _refresh_debug(runners: list[Runner]) -> None:
    on = debug_enabled()
    for r in runners:
        r.debug = on


async def _in_scope(scope: anyio.CancelScope, fn: Callable[[], Awaitable[None]]) -> None:
    with scope:
        await fn()
