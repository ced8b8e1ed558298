"""Runs claimed jobs: one long-lived runner task per concurrency slot, no database access.

Why runner loops and not a task per job under a semaphore: creating an asyncio task costs
~17 µs and an anyio ``start_soon`` ~57 µs, a large share of a no-op job's budget. A fixed
set of ``concurrency`` runners, each taking the next job from the :class:`JobBuffer`, is
the same limit (never more than ``concurrency`` handlers at once) at a fraction of the
cost, and a slow job only holds its own runner.

Each run ends in a :class:`RunResult` put into the :class:`ResultBuffer`: the outcome,
timestamps, error text with traceback, the encoded result, and the retry decision taken
by the job type's error filter (see ``_retry.py``).
"""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, cast

import anyio

from ._buffer import JobBuffer, ResultBuffer
from ._clock import Clock
from ._codec import encode
from ._errors import ErrorWithRetry
from ._log import JOB_FAILED, JOB_FINISHED, JOB_RETRY, JOB_STARTED, get_logger
from ._models import Job, Outcome
from ._registry import JobType, Registry

__all__ = ["RunResult", "RunStats", "Runner", "error_text"]

_log = get_logger()


class RunResult(NamedTuple):
    """One finished run, as the flusher needs it."""

    job: Job
    outcome: Outcome
    started: float  # wall clock, epoch seconds
    finished: float
    error: str | None  # text with traceback
    result: str | None  # JSON text of the handler's return value
    retry: ErrorWithRetry | None  # set when the job runs again
    error_inc: int  # added to the job's error count (0 for a success or an interruption)


def _new_result(values: tuple[Any, ...]) -> RunResult:
    """Build a RunResult without NamedTuple's keyword handling (half the cost, once per job)."""
    return tuple.__new__(RunResult, values)


class RunStats:
    """Counters the runners bump and the fetcher reads (one event loop: no locks)."""

    __slots__ = ("busy_s", "finished", "outstanding")

    def __init__(self) -> None:
        self.outstanding = 0  # claimed and not finished; the fetcher adds, runners subtract
        self.finished = 0  # runs finished since start
        self.busy_s = 0.0  # handler seconds summed over finished runs


def error_text(exc: BaseException) -> str:
    """The error as stored: type, message and traceback (the wrapped error for a retry)."""
    inner = exc.error if isinstance(exc, ErrorWithRetry) else exc
    return "".join(traceback.format_exception(inner)).rstrip()


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
    ) -> None:
        self._registry = registry
        self._jobs = jobs
        self._results = results
        self._stats = stats
        self._clock = clock
        self._on_capacity = on_capacity
        self._limiter = thread_limiter
        self.debug = False  # per-job DEBUG events; the worker refreshes it per batch

    async def run(self) -> None:
        """Take and run jobs until the job buffer is closed and empty."""
        jobs, results, stats, now = self._jobs, self._results, self._stats, self._clock.time
        on_capacity = self._on_capacity
        while True:
            job = await jobs.pop()
            if job is None:
                return
            started = now()
            result = await self._run_one(job, started)
            stats.busy_s += result.finished - started
            if results.put(result):
                await results.wait_drained()
            stats.finished += 1
            stats.outstanding -= 1
            on_capacity()

    async def _run_one(self, job: Job, started: float) -> RunResult:
        jt = self._registry.get(job.type)
        if self.debug:
            _log.debug(JOB_STARTED, job_id=job.id, type=job.type, queue=job.queue, attempt=job.attempt)
        try:
            if jt is None:
                raise LookupError(  # noqa: TRY301 - handled below like any handler error
                    f"job type {job.type!r} is not registered in this worker; "
                    "register it with @scheduler.job in the module the worker imports"
                )
            if jt.is_async:
                value = await cast("Callable[[Job], Awaitable[object]]", jt.handler)(job)
            else:
                value = await anyio.to_thread.run_sync(jt.handler, job, limiter=self._limiter)
            if isinstance(value, ErrorWithRetry):
                raise value  # noqa: TRY301 - a returned retry request is handled like a raised one
            encoded = None if value is None else encode(value, what=f"result of job type {job.type!r}")
        except Exception as exc:  # noqa: BLE001 - any handler error becomes the run's error
            return self._failed(job, jt, exc, started)
        finished = self._clock.time()
        if self.debug:
            _log.debug(
                JOB_FINISHED,
                job_id=job.id,
                type=job.type,
                queue=job.queue,
                attempt=job.attempt,
                duration_s=round(finished - started, 6),
            )
        return _new_result((job, Outcome.SUCCEEDED, started, finished, None, encoded, None, 0))

    def _failed(self, job: Job, jt: JobType | None, exc: Exception, started: float) -> RunResult:
        decided: BaseException = exc
        if jt is not None and jt.retry is not None:
            try:
                decided = jt.retry(job, exc)
            except Exception as filter_exc:  # noqa: BLE001 - a broken filter must not lose the job
                decided = filter_exc
        retry = decided if isinstance(decided, ErrorWithRetry) else None
        if jt is None:
            retry = None  # unknown types end at once: retrying cannot make this process know them
        finished = self._clock.time()
        text = error_text(exc if decided is exc or retry is not None else decided)
        fields: dict[str, Any] = {
            "job_id": job.id,
            "type": job.type,
            "queue": job.queue,
            "attempt": job.attempt,
            "duration_s": round(finished - started, 6),
            "error": f"{type(exc).__name__}: {exc}",
        }
        if retry is not None:
            when = retry.at.isoformat() if retry.at is not None else f"+{retry.delay:g}s"
            _log.info(JOB_RETRY, retry_at=when, **fields)
        else:
            _log.warning(JOB_FAILED, **fields)
        return _new_result((job, Outcome.FAILED, started, finished, text, None, retry, 1))
