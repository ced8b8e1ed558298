"""Runs claimed jobs: one long-lived runner task per concurrency slot, no database access.

Why runner loops and not a task per job under a semaphore: creating an asyncio task costs
~17 µs and an anyio ``start_soon`` ~57 µs, a large share of a no-op job's budget. A fixed
set of ``concurrency`` runners, each taking the next job from the :class:`JobBuffer`, is
the same limit (never more than ``concurrency`` handlers at once) at a fraction of the
cost, and a slow job only holds its own runner.

Each run ends in a :class:`RunResult` put into the :class:`ResultBuffer`: the outcome,
timestamps, error text with traceback, the encoded result, and the retry decision taken
by the job type's error filter (see ``_retry.py``). A success is built here, on the hot
path, and so is a job refused before it starts; failures, verdicts and stops are built by
``endings.py``.

Stopping one job. Timeouts, ``cancel()``, the end of a shutdown's grace period and a lost
lease must stop one running job and leave the others alone. A runner runs one job at a
time in its own task, so :meth:`Runner.interrupt` records a reason and cancels that task;
the runner catches the ``CancelledError`` at the handler's await and takes it back
(``Task.uncancel``). This costs nothing while no job is stopped, where an anyio
``CancelScope`` per job costs ~4 µs, a sixth of a no-op job's budget. A cancellation
without a reason is the worker's own (a hard stop): the run is recorded as interrupted
and the cancellation propagates; anyio keeps re-delivering its cancellation until the task
leaves the cancelled scope, so anyio's scopes still behave.

Sync handlers run in worker threads (``anyio.to_thread``). A thread cannot be stopped:
on a timeout or cancel the runner records the outcome and moves on at once
(``abandon_on_cancel``), the thread finishes in the background and its return value is
ignored; it keeps its slot of the runners' thread limiter until it returns
(``_run_in_thread``), so threads never exceed ``concurrency``: hung sync handlers use up
slots instead of piling up threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any, cast

import anyio

from pgqueue._clock import Clock
from pgqueue._codec import encode
from pgqueue._context import CURRENT_JOB
from pgqueue._errors import ErrorWithRetry
from pgqueue._log import JOB_FINISHED, JOB_STARTED, JOB_STOPPED, get_logger
from pgqueue._models import ROW_CANCEL_REQUESTED, ROW_COUNTED, ROW_ID, ROW_TIMEOUT, ROW_TYPE, Job, Outcome
from pgqueue._registry import JobType, Registry
from pgqueue._verdicts import Verdict

from . import endings, progress
from .job_buffer import JobBuffer
from .result_buffer import ResultBuffer
from .results import RunResult, RunStats, new_result

__all__ = ["Runner"]

_log = get_logger()
# anyio's default thread limiter (40) would cap sync handlers below a large concurrency; the
# runners' own limiter is the real bound (see Runner._run_in_thread).
_THREADS = anyio.CapacityLimiter(10_000)


class _FromThread(Exception):  # noqa: N818 - a carrier, not an error of its own
    """A sync handler's ``BaseException`` that is not an ``Exception``, carried out of its thread.

    A ``GeneratorExit`` set on the thread's future escapes every ``except`` in the awaiting
    coroutine chain and ends the runner's task (CPython's coroutine machinery treats it as
    the chain being closed), so it must not cross as itself.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


class Runner:
    """One runner loop; the worker starts ``concurrency`` of them on shared buffers."""

    def __init__(
        self,
        *,
        registry: Registry,
        jobs: JobBuffer[Job],
        results: ResultBuffer[RunResult],
        stats: RunStats,
        clock: Clock,
        on_capacity: Callable[[], None],
        thread_limiter: anyio.CapacityLimiter,
        arm_deadline: Callable[[float], None],
        progress_writer: progress.ProgressSink | None = None,
    ) -> None:
        self._registry = registry
        self._types = registry.by_name
        self._jobs = jobs
        self._results = results
        self._stats = stats
        self._clock = clock
        self._now = clock.time
        self._on_capacity = on_capacity
        self._limiter = thread_limiter
        self._arm = arm_deadline
        self._progress = progress_writer
        self._task: asyncio.Task[Any] | None = None
        self._reason: Outcome | None = None  # why the current job is being stopped
        self.job: Job | None = None  # the job in the handler right now
        self.deadline: float | None = None  # when that run times out (monotonic clock)

    def interrupt(self, reason: Outcome, job_id: int | None = None) -> bool:
        """Stop the running job (only ``job_id``, when given) for ``reason``; False if none."""
        job, task = self.job, self._task
        if (
            job is None
            or task is None
            or self._reason is not None
            or (job_id is not None and job.id != job_id)
        ):
            return False
        self._reason = reason
        task.cancel()
        return True

    async def _run_in_thread(self, fn: Callable[[Job], object], job: Job) -> object:
        """Run a sync handler in a worker thread that holds a slot until the function returns.

        The slot is taken here and given back from the thread's own end, not when the await
        ends: a timed-out or cancelled run stops waiting at once, but its thread keeps the
        slot until the function really returns, so threads never exceed ``concurrency``.

        A run stopped before a thread has started it never starts (anyio drops a call whose
        waiter is gone), so nothing would give its slot back and the runners would lose it
        for good. ``abandoned`` and ``started``, set under one lock, decide who gives it
        back: the thread if it started first, this side if the stop came first (and a
        thread that picks the call up after that returns without running it).
        """
        limiter = self._limiter
        token = object()
        await limiter.acquire_on_behalf_of(token)
        loop = asyncio.get_running_loop()
        lock = threading.Lock()
        started = abandoned = False

        def call() -> object:
            nonlocal started
            with lock:
                if abandoned:
                    return None  # stopped before it began: its slot is back already
                started = True
            try:
                return fn(job)
            except Exception:
                raise
            except BaseException as exc:  # noqa: BLE001 - carried out of the thread, unwrapped in _run_one
                raise _FromThread(exc) from None
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to free
                    loop.call_soon_threadsafe(limiter.release_on_behalf_of, token)

        try:
            return await anyio.to_thread.run_sync(call, abandon_on_cancel=True, limiter=_THREADS)
        except BaseException:
            with lock:
                abandoned = True
                ran = started
            if not ran:
                limiter.release_on_behalf_of(token)
            raise

    def _take_reason(self) -> Outcome | None:
        reason = self._reason
        if reason is not None:
            self._reason = None
            if self._task is not None:
                self._task.uncancel()
        return reason

    async def run_inline(self, job: Job) -> RunResult:
        """Run one job in the calling task and return its result (``pgqueue.testing``).

        The same decisions as the worker's loop (verdicts, retry filters, timeouts through
        the watchdog this runner arms); the caller writes the result.
        """
        self._task = asyncio.current_task()
        token = progress.CURRENT.set(self._progress)
        try:
            return await self._run_one(job, self._now())
        finally:
            progress.CURRENT.reset(token)

    async def run(self) -> None:
        """Take and run jobs until the job buffer is closed and empty."""
        self._task = asyncio.current_task()
        if self._progress is not None:
            progress.CURRENT.set(self._progress)  # this task's context: once, not per job
        jobs, results, stats, now = self._jobs, self._results, self._stats, self._clock.time
        on_capacity = self._on_capacity
        taken = jobs.taken  # runs holding a leased slot (job_buffer): empty without leased queues
        while True:
            job = await jobs.pop()
            if job is None:
                return
            started = now()
            result = await self._run_one(job, started)
            if taken:
                jobs.done(job)
            stats.busy_s += result[3] - started  # .finished, without the NamedTuple property call
            if results.put(result):
                await results.wait_drained()
            stats.finished += 1
            stats.outstanding -= 1
            on_capacity()

    async def _run_one(self, job: Job, started: float) -> RunResult:  # noqa: C901, PLR0911, PLR0912, PLR0915 - one hot function on purpose: every call costs per job
        row = job.row
        jt = self._types.get(row[ROW_TYPE])
        if jt is None:
            unknown = LookupError(
                f"job type {job.type!r} is not registered in this worker; "
                "register it with @scheduler.job in the module the worker imports"
            )
            return endings.failed(self._clock, job, None, unknown, started)
        cancelled = self._jobs.cancelled
        if (
            row[ROW_CANCEL_REQUESTED]
            or row[ROW_COUNTED] > jt.max_attempts
            or (cancelled and row[ROW_ID] in cancelled)
        ):
            return self._refuse(job, jt, started)
        suspending = self._jobs.suspending
        if suspending and row[ROW_ID] in suspending:
            suspending.discard(row[ROW_ID])
            job._request_suspend()  # noqa: SLF001 - asked while the job waited in the buffer
        timeout = row[ROW_TIMEOUT] or jt.timeout
        if timeout is not None:
            self.deadline = self._clock.monotonic() + timeout
            self._arm(self.deadline)
        debug = self._stats.debug
        if debug:
            _log.debug(JOB_STARTED, job_id=job.id, type=job.type, queue=job.queue, attempt=job.attempt)
        self.job = job
        current = CURRENT_JOB.set(job)  # current_job(): the one per-run cost, ~0.1 µs with the reset
        try:
            if jt.params is not None:
                job._set_params(jt.params.validate(job.params))  # noqa: SLF001 - typed params, the runner's step
            if jt.is_async:
                value = await cast("Callable[[Job], Awaitable[object]]", jt.handler)(job)
            else:
                value = await self._run_in_thread(jt.handler, job)
            if isinstance(value, ErrorWithRetry):
                raise value  # noqa: TRY301 - a returned retry request is handled like a raised one
            encoded = None if value is None else encode(value, what=f"result of job type {job.type!r}")
        except asyncio.CancelledError as exc:
            reason = self._take_reason()
            if reason is not None:
                return endings.stopped(self._clock, job, jt, reason, started, timeout=timeout)
            task = self._task
            if task is not None and task.cancelling():  # the worker itself is cancelled: a hard stop
                self._hard_stopped(job, started)
                raise
            # Nobody cancelled this task: the handler raised it, or awaited something a third
            # party cancelled. That is the run's failure; stopping the worker for it would
            # leave every other queued job waiting.
            return endings.failed(self._clock, job, jt, exc, started)
        except BaseException as exc:  # noqa: BLE001 - any handler error becomes the run's error
            # SystemExit, KeyboardInterrupt and the like raised by handler code included: a
            # real Ctrl-C or SIGTERM never arrives here as an exception (the CLI and asyncio.run
            # turn signals into the graceful or the hard stop), so this is the handler's own.
            reason = self._take_reason()  # a stop that raced with the handler's own error wins
            if reason is not None:
                return endings.stopped(self._clock, job, jt, reason, started, timeout=timeout)
            if isinstance(exc, Verdict):
                return endings.verdict(self._clock, job, exc, started)
            return endings.failed(
                self._clock, job, jt, exc.error if isinstance(exc, _FromThread) else exc, started
            )
        finally:
            CURRENT_JOB.reset(current)
            self.job = None
            self.deadline = None
        if self._reason is not None and self._take_reason() is not None:
            _log.warning(
                JOB_STOPPED, job_id=job.id, type=job.type, note="the handler ignored the cancellation"
            )
        finished = self._now()
        if debug:
            _log.debug(
                JOB_FINISHED,
                job_id=job.id,
                type=job.type,
                queue=job.queue,
                attempt=job.attempt,
                duration_s=round(finished - started, 6),
            )
        lines = None if job._control is None else job._log_text  # noqa: SLF001 - the run's own state
        return tuple.__new__(
            RunResult, (job, Outcome.SUCCEEDED, started, finished, None, encoded, None, 0, lines)
        )

    def _refuse(self, job: Job, jt: JobType, started: float) -> RunResult:
        """End a claimed job without running it: cancelled meanwhile, or out of attempts."""
        given_up = endings.gave_up(self._clock, job, jt, started)
        if given_up is not None:
            return given_up
        self._jobs.cancelled.discard(job.id)
        note = "cancelled before it started"
        _log.info(JOB_STOPPED, job_id=job.id, type=job.type, queue=job.queue, outcome="cancelled", note=note)
        return new_result((job, Outcome.CANCELLED, started, self._clock.time(), note, None, None, 0, None))

    def _hard_stopped(self, job: Job, started: float) -> None:
        """Record a run cut by the worker's own cancellation; the flush in clean-up writes it."""
        note = "interrupted: the worker was stopped at once; the job runs again"
        self._results.put(
            endings.interrupted(job, started, self._clock.time(), note)
        )  # never waits: being cancelled
        self._stats.outstanding -= 1
