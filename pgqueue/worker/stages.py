"""The wiring of one worker run: every stage built once, in data-flow order.

Later stages get earlier ones' callbacks (the runners report capacity to the fetcher, the
flusher tells it when a put-back job is due, the listener wakes it); nothing is changed on
a stage after it is built. The watchdog is built before the runners, which arm it, and
gets them when it starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import anyio

from pgqueue._clock import Clock
from pgqueue._config import WorkerConfig
from pgqueue._models import Job
from pgqueue._registry import Registry
from pgqueue._signals import WorkerSignals
from pgqueue.maintenance import Duty, Leader, Reaper, Retention, Vacuum, repeat
from pgqueue.maintenance.vacuum import CHECK_S
from pgqueue.periodic.enqueuer import PeriodicEnqueuer
from pgqueue.store import Held, WorkerBackend

from .fetcher import Fetcher
from .flusher import Flusher
from .job_buffer import JobBuffer
from .lease import Identity, Lease
from .listener import Listener
from .progress import ProgressWriter
from .result_buffer import ResultBuffer
from .results import RunResult, RunStats
from .runner import Runner
from .tally import Tally
from .turns import Turns
from .watchdog import Watchdog

__all__ = ["Stages", "build"]

PERIODIC_MAX_SLEEP_S = 10.0  # a periodic round at least this often: a stepped wall clock is followed
PERIODIC_RETRY_S = 1.0  # after a failed round; ticks within their grace are offered again
RETENTION_INTERVAL_S = 600.0  # between retention rounds (tomorrow's partitions exist 3 days ahead)
RETENTION_BUSY_S = 60.0  # after a round that could not get its locks for some step
RETENTION_FIRST_S = 60.0  # a new leader's first round: after start-up, whose claims come first


@dataclasses.dataclass(frozen=True, slots=True)
class Stages:
    """Everything one run of a worker is made of, built by :func:`build`."""

    jobs: JobBuffer[Job]
    results: ResultBuffer[RunResult]
    fetcher: Fetcher
    watchdog: Watchdog
    runners: tuple[Runner, ...]
    flusher: Flusher
    listener: Listener | None
    lease: Lease
    reaper: Reaper
    leader: Leader | None
    progress: ProgressWriter
    store: WorkerBackend


def build(
    *,
    store: WorkerBackend,
    config: WorkerConfig,
    registry: Registry,
    clock: Clock,
    identity: Identity,
    signals: WorkerSignals,
    stats: RunStats,
    cancel_local: Callable[[int], object],
    suspend_local: Callable[[int], object],
    report: Callable[[BaseException, str], None],
    held: tuple[Held | None, Held | None],
    tally: Tally | None = None,
) -> Stages:
    """Build every stage once, in data-flow order; later stages get earlier ones' callbacks.

    ``held``: the connections the claims and the flushes keep (``store.hold()``; None when
    the pool cannot spare one), opened by the worker while it registered.
    ``tally``: where the fetcher and the flusher count claims and flushes for metrics.
    """
    cfg = config
    jobs: JobBuffer[Job] = JobBuffer()
    results: ResultBuffer[RunResult] = ResultBuffer(
        flush_max=cfg.flush_max,
        flush_age=cfg.flush_age,
        high_water=cfg.buffer_max,
        monotonic=clock.monotonic,
    )
    claim_conn, flush_conn = held
    turns = Turns(enabled=cfg.take_turns)  # the claim and the flush take turns on the database
    built: list[Runner] = []  # the runners, for the fetcher's look at the jobs they run
    fetcher = Fetcher(
        store=store,
        config=cfg,
        identity=identity,
        jobs=jobs,
        results=results,
        stats=stats,
        clock=clock,
        on_error=lambda exc: report(exc, "claim"),
        held=claim_conn,
        signals=signals,
        tally=tally,
        running=lambda: [r.job for r in built if r.job is not None],
        turns=turns,
    )
    watchdog = Watchdog(clock)
    progress = ProgressWriter(
        store=store,
        worker_id=lambda: identity.id,
        interval=cfg.progress_interval,
        on_error=lambda exc: report(exc, "progress"),
        signals=signals,
    )
    limiter = anyio.CapacityLimiter(cfg.concurrency)
    runners = tuple(
        Runner(
            registry=registry,
            jobs=jobs,
            results=results,
            stats=stats,
            clock=clock,
            on_capacity=fetcher.on_capacity,
            thread_limiter=limiter,
            arm_deadline=watchdog.arm,
            progress_writer=progress,
        )
        for _ in range(cfg.concurrency)
    )
    built.extend(runners)
    flusher = Flusher(
        store=store,
        results=results,
        identity=identity,
        should_log_run=cfg.should_log_run,
        on_put_back=fetcher.note_due,
        batch_max=cfg.flush_max,
        on_error=lambda exc: report(exc, "flush"),
        held=flush_conn,
        signals=signals,
        tally=tally,
        turns=turns,
    )
    listener = (
        Listener(
            store=store,
            queues=cfg.queues,
            on_ready=fetcher.notify_ready,
            on_job=fetcher.notify_job,
            on_due=fetcher.note_due,
            on_state=fetcher.set_listening,
            on_cancel=cancel_local,
            on_suspend=suspend_local,
            on_error=lambda exc: report(exc, "listen"),
            probe_interval=cfg.listen_probe_interval,
            probe_timeout=cfg.listen_probe_timeout,
            signals=signals,
        )
        if cfg.listen
        else None
    )
    reaper = Reaper(
        store=store,
        self_id=lambda: identity.id,
        dead_after=cfg.dead_after,
        on_reaped=fetcher.notify_ready,
        signals=signals,
    )
    leader = _leader(
        store=store, config=cfg, registry=registry, identity=identity, report=report, signals=signals
    )
    lease = Lease(
        store=store,
        identity=identity,
        queues=cfg.queues,
        interval=cfg.heartbeat_interval,
        clock=clock,
        jobs=jobs,
        runners=runners,
        stats=stats,
        cancel_local=cancel_local,
        suspend_local=suspend_local,
        on_reregistered=fetcher.notify_ready,
        after_healthy_beat=(lambda: leader.after_beat(reaper.reap_once)) if leader else _nothing,
        report=report,
        signals=signals,
    )
    return Stages(
        jobs,
        results,
        fetcher,
        watchdog,
        runners,
        flusher,
        listener,
        lease,
        reaper,
        leader,
        progress,
        store,
    )


async def _nothing() -> None:
    """After a heartbeat of a worker outside the maintenance election."""


def _leader(
    *,
    store: WorkerBackend,
    config: WorkerConfig,
    registry: Registry,
    identity: Identity,
    report: Callable[[BaseException, str], None],
    signals: WorkerSignals,
) -> Leader | None:
    """The worker's part in the maintenance election (None with ``maintenance=False``).

    Its duties besides reaping (which follows the lease's heartbeats): the hot table's
    vacuum, unless ``vacuum_min_dead`` is 0, and the rounds of the registry's periodic
    declarations, if any (a declaration whose type or params are wrong raises here, before
    the worker claims anything), and the run log's partitions and retention.
    """
    cfg = config
    if not cfg.maintenance:
        return None
    duties: list[Duty] = []
    if cfg.vacuum_min_dead:
        vacuum = Vacuum(
            store=store,
            min_dead=cfg.vacuum_min_dead,
            interval=min(cfg.heartbeat_interval, CHECK_S),
            self_id=lambda: identity.id,
            report=report,
            signals=signals,
        )
        duties.append(vacuum.run)
    if registry.periodic:
        enqueuer = PeriodicEnqueuer(store, registry)

        async def periodic_round() -> float:
            return min(await enqueuer.run_once(), PERIODIC_MAX_SLEEP_S)

        duties.append(repeat(periodic_round, PERIODIC_RETRY_S, "periodic", report))
    retention = Retention(store, cfg.retention, cfg.retention_failed)

    async def retention_round() -> float | None:
        return RETENTION_BUSY_S if (await retention.run_once()).busy else None

    duties.append(
        repeat(retention_round, RETENTION_INTERVAL_S, "retention", report, first_after=RETENTION_FIRST_S)
    )
    return Leader(
        store=store,
        duties=duties,
        interval=cfg.heartbeat_interval,
        # No LISTEN means a transaction-mode pooler (no session locks either), and a small
        # application pool cannot spare a connection: every worker runs the duties then.
        elect=cfg.listen and store.can_elect(),
        self_id=lambda: identity.id,
        report=report,
        signals=signals,
    )
