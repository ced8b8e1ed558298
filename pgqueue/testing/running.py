"""drain() and run_job() run jobs to completion in the test's own task; advance() moves the clock.

See :mod:`pgqueue.testing` for what each one is for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import anyio

from pgqueue._clock import SystemClock
from pgqueue._codec import decode, encode
from pgqueue._context import CURRENT_SCHEDULER, reset_scheduler
from pgqueue._enqueue import check_tenant
from pgqueue._errors import ConfigError, PgQueueError, unwrap_group
from pgqueue._joblog import LogLine, decode_lines
from pgqueue._models import Job, JobHandler, Outcome
from pgqueue._registry import JobType, Registry
from pgqueue._scheduler import Scheduler
from pgqueue.store import Store
from pgqueue.store.memory import MemoryStore
from pgqueue.worker.flusher import build_batch
from pgqueue.worker.job_buffer import JobBuffer
from pgqueue.worker.result_buffer import ResultBuffer
from pgqueue.worker.results import RunStats
from pgqueue.worker.runner import Runner
from pgqueue.worker.watchdog import Watchdog

__all__ = ["DEFAULT_MAX_RUNS", "DrainedRun", "JobOutcome", "advance", "drain", "run_job"]


DEFAULT_MAX_RUNS = (
    10_000  # drain() stops (and raises) past this many runs: a job that reschedules itself forever
)


@dataclasses.dataclass(frozen=True, slots=True)
class DrainedRun:
    """One run :func:`drain` made."""

    job_id: int
    type: str
    queue: str
    attempt: int
    """The run's number, from 1."""
    outcome: Outcome
    params: Any
    """The job's params as stored (decoded JSON)."""
    result: Any
    """The handler's return value (decoded JSON), for a success."""
    error: str | None
    """Error text with traceback, or a verdict's note."""
    again: bool
    """True when the job was put back to run again (a retry, a snooze); not for a suspension."""
    log: list[LogLine] = dataclasses.field(default_factory=list)
    """The lines the handler wrote through ``job.log`` during the run (stored with it too)."""


@dataclasses.dataclass(frozen=True, slots=True)
class JobOutcome:
    """What one handler run decided, as :func:`run_job` returns it."""

    outcome: Outcome
    result: Any
    """The return value (decoded JSON, as it would be stored), for a success."""
    error: str | None
    """Error text with traceback for a failure; the note of a verdict."""
    retry_at: dt.datetime | None
    """When the job would run again, if at a fixed time (``ErrorWithRetry(at=...)``)."""
    retry_in: float | None
    """In how many seconds the job would run again, for a retry or snooze by delay."""
    progress: tuple[tuple[float, str | None], ...]
    """Every ``set_progress`` report, in order, as (fraction 0..1, message)."""
    checkpoint: Any
    """The last ``job.checkpoint(data)`` of the run (decoded JSON), or None."""
    log: list[LogLine] = dataclasses.field(default_factory=list)
    """The lines the handler wrote through ``job.log``, as ``get_job`` would read them."""

    @property
    def again(self) -> bool:
        """True when the job would run again by itself (a retry, a snooze; not a suspension)."""
        return self.retry_at is not None or self.retry_in is not None


class _Progress:
    """Stands in for the worker's progress writer: keeps every report, writes nothing."""

    def __init__(self) -> None:
        self.reports: list[tuple[float, str | None]] = []

    def record(self, job_id: int, attempt: int, fraction: float, message: str | None) -> None:  # noqa: ARG002 - the writer's signature
        self.reports.append((fraction, message))


def _runner(registry: Registry, watchdog: Watchdog, recorder: _Progress | None = None) -> Runner:
    clock = SystemClock()
    return Runner(
        registry=registry,
        jobs=JobBuffer(),
        results=ResultBuffer(flush_max=1, flush_age=1.0, high_water=1, monotonic=clock.monotonic),
        stats=RunStats(),
        clock=clock,
        on_capacity=lambda: None,
        thread_limiter=anyio.CapacityLimiter(1),
        arm_deadline=watchdog.arm,
        progress_writer=recorder,
    )


@contextlib.asynccontextmanager
async def _watched(runner: Runner, watchdog: Watchdog) -> AsyncIterator[None]:
    """Keep the watchdog running while runs happen inline, so timeouts apply as in a worker.

    What the block raises comes out as itself, not in the task group's exception group.
    """
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(watchdog.run, [runner])
            yield
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise unwrap_group(group) from None


async def drain(
    scheduler: Scheduler, queues: Iterable[str] | None = None, *, max_runs: int = DEFAULT_MAX_RUNS
) -> list[DrainedRun]:
    """Run every due job to completion in the calling task; the runs, in the order they ran.

    Jobs are claimed one at a time in claim order (priority, due time, id) from ``queues``
    (default: the queues of the registered types), so jobs that handlers schedule, and
    retries or snoozes due at once, run in the same call; a retry due later runs after
    :func:`advance` (in-memory backend) and another ``drain``. Each result is written as
    the worker writes it. Raises :class:`~pgqueue.PgQueueError` after ``max_runs`` runs
    (jobs that keep scheduling more). Handlers see ``scheduler`` as ``current_scheduler()``
    and their job as ``current_job()``, as in a worker.
    """
    store = await scheduler.open()
    qs = list(queues) if queues is not None else list(scheduler.registry.queues())
    if not qs:
        raise ConfigError("drain: no queues (register a job type first, or pass queues=[...])")
    worker_id, server_time = await store.worker_register(qs, 1)  # one run at a time
    offset = server_time - time.time()  # run times go on the store's clock, as a worker's do
    watchdog = Watchdog(SystemClock())
    runner = _runner(scheduler.registry, watchdog)
    ran: list[DrainedRun] = []
    current = CURRENT_SCHEDULER.set(scheduler)  # handlers see it, as a worker's see its own
    try:
        async with _watched(runner, watchdog):
            while True:
                rows = await store.job_claim_many(qs, 1, worker_id)
                if not rows:
                    return ran
                if len(ran) >= max_runs:
                    await store.job_release_many(worker_id, [rows[0][0]])
                    raise PgQueueError(f"drain stopped after {max_runs} runs: jobs keep coming")
                ran.append(await _run_one(store, runner, worker_id, offset, Job._from_row(rows[0])))  # noqa: SLF001 - the worker's own path
    finally:
        reset_scheduler(current)
        with anyio.CancelScope(shield=True):
            await store.worker_deregister(worker_id)


async def _run_one(store: Store, runner: Runner, worker_id: int, offset: float, job: Job) -> DrainedRun:
    """Run one claimed job and write its result as the flusher does."""
    result = await runner.run_inline(job)
    await store.job_finalize_many(worker_id, build_batch([result], None), clock_offset=offset)
    return DrainedRun(
        job_id=job.id,
        type=job.type,
        queue=job.queue,
        attempt=job.attempt,
        outcome=result.outcome,
        params=decode(job.params_json),
        result=decode(result.result),
        error=result.error,
        again=result.retry is not None and result.outcome is not Outcome.SUSPENDED,
        log=decode_lines(result.log),
    )


def advance(scheduler: Scheduler, seconds: float | dt.timedelta) -> None:
    """Move the in-memory backend's clock forward; jobs and retries due by then become due.

    The queues of the jobs that became due are told, so running workers claim them at once.
    PostgreSQL's clock cannot be moved: on that backend this raises :class:`ConfigError`.
    """
    store = scheduler._store  # noqa: SLF001 - the scheduler's current backend, set for an in-memory one
    if not isinstance(store, MemoryStore):
        raise ConfigError(
            "advance() needs the in-memory backend (Scheduler.in_memory()): a database clock cannot move"
        )
    step = seconds.total_seconds() if isinstance(seconds, dt.timedelta) else float(seconds)
    if not step >= 0:
        raise ConfigError(f"advance() moves forward only: got {seconds!r}")
    store.advance(step)


async def run_job(
    handler_or_type: JobHandler | JobType | str,
    params: object = None,
    *,
    scheduler: Scheduler | None = None,
    attempt: int = 1,
    errors: int = 0,
    checkpoint: object = None,
    suspend_requested: bool = False,
    job_id: int = 1,
    tenant: str | None = None,
) -> JobOutcome:
    """Run one handler inline on a realistic :class:`~pgqueue.Job` and return what it decided.

    ``handler_or_type``: a handler function, a registered type's name (with
    ``scheduler=``, whose registry has it) or a ``JobType``. ``params`` go through the
    same encoding (and the type's params model) as ``schedule()``, so the handler sees
    what it would see in production. ``attempt``, ``errors``, ``checkpoint`` and
    ``tenant`` set the Job's fields (a retry's view, a tenant's job);
    ``suspend_requested`` makes ``job.checkpoint()`` stop the run. The type's retry
    filter, ``max_attempts`` and timeout apply. Nothing is stored: the outcome is returned.
    In the handler, ``current_job()`` is that Job, and ``current_scheduler()`` is
    ``scheduler`` when given (else whatever the caller's context holds).
    """
    registry, jt = _resolve(handler_or_type, scheduler)
    if jt.params is not None:
        params = jt.params.to_json(jt.params.validate(params))
    stored = encode(params)
    job = Job(
        id=job_id,
        type=jt.name,
        params=decode(stored),
        queue=jt.queue,
        attempt=attempt,
        errors=errors,
        checkpoint=checkpoint,
        tenant=None if tenant is None else check_tenant(tenant),
    )
    if suspend_requested:
        job._request_suspend()  # noqa: SLF001 - what the worker does on suspend()
    recorder = _Progress()
    watchdog = Watchdog(SystemClock())
    runner = _runner(registry, watchdog, recorder)
    current = None if scheduler is None else CURRENT_SCHEDULER.set(scheduler)
    try:
        async with _watched(runner, watchdog):
            result = await runner.run_inline(job)
    finally:
        if current is not None:
            reset_scheduler(current)
    retry = None if result.outcome is Outcome.SUSPENDED else result.retry  # runs again on resume() only
    return JobOutcome(
        outcome=result.outcome,
        result=decode(result.result),
        error=result.error,
        retry_at=None if retry is None else retry.at,
        retry_in=None if retry is None or retry.at is not None else retry.delay,
        progress=tuple(recorder.reports),
        checkpoint=decode(job._saved_checkpoint),  # noqa: SLF001 - what the flush would store
        log=decode_lines(result.log),
    )


def _resolve(target: JobHandler | JobType | str, scheduler: Scheduler | None) -> tuple[Registry, JobType]:
    if isinstance(target, str):
        if scheduler is None:
            raise ConfigError(
                f"run_job({target!r}): give scheduler= to look the type up, or pass the handler"
            )
        return scheduler.registry, scheduler.registry.require(target)
    registry = Registry()
    if isinstance(target, JobType):
        registry.add(
            target.name,
            target.handler,
            queue=target.queue,
            retry=target.retry,
            timeout=target.timeout,
            max_attempts=target.max_attempts,
            params=target.params_model,
            suspendable=target.suspendable,
        )
        return registry, registry.require(target.name)
    name = getattr(target, "__name__", "job")
    return registry, registry.add(name if name.isidentifier() else "job", target, queue="default", retry=None)


# -- assertions -----------------------------------------------------------------------------
