"""Workloads (b), (d), (f), (g): the durable drain, its WAL and tuple cost, the worker's memory.

Method (the peers' ``measure_drain``): ``n`` jobs pre-queued in bulk (untimed), then
``VACUUM ANALYZE`` and ``CHECKPOINT``; one worker at concurrency C in this process. The
clock starts at the call that starts the worker (start-up is part of the cost) and stops
when **the database** shows every job finished: the hot table empty and ``n`` rows in the
run log, polled every 10 ms once the last handler has run. A handler count alone would
report jobs whose results still sit in the worker's buffer.

Around the drain the server's WAL and table counters are read (see ``_stats``), and this
process's RSS before the worker starts and once the jobs are persisted: the worker runs
here, and after the preload's garbage is collected it is what grows.

The same function drains the big backlog (``--big``), with a progress bar and the rate
per tenth of the backlog, which shows whether claims slow down as the table shrinks.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from contextlib import AsyncExitStack

import anyio
import asyncpg

from pgqueue import Worker

from ._dbcpu import database_backends_cpu_s
from ._harness import (
    DEDICATED_TURNS,
    Params,
    Tracker,
    fresh_scheduler,
    preload,
    progress_bar,
    vacuum_and_checkpoint,
)
from ._metrics import metered
from ._probe import LoopProbe
from ._stats import cost_per_job, rss_mb, snapshot

__all__ = ["bench_drain"]

POLL_S = 0.01  # database poll once the handlers are done, as the peers poll
SAMPLE_S = 0.1  # handler-count sampling for the progress bar and the per-tenth rates
BIG_RATE_FLOOR = 2000  # jobs/s: the big drain's timeout assumes at least this rate


async def _sample(
    tracker: Tracker,
    t0: float,
    samples: list[tuple[float, int]],
    bar_update: Callable[[int, float], None],
) -> None:
    """Record (seconds since start, handlers done) every SAMPLE_S, and move the bar."""
    while True:
        now = time.time()
        samples.append((now - t0, tracker.count))
        bar_update(tracker.count, tracker.count / max(now - t0, 1e-9))
        await anyio.sleep(SAMPLE_S)


def _tenths(samples: list[tuple[float, int]], n: int) -> list[float]:
    """Handler-side jobs/s over each tenth of the backlog (times interpolated between samples)."""
    marks: list[float] = [0.0]
    step = n / 10
    prev_t, prev_c = 0.0, 0
    for t, c in samples:
        while len(marks) <= 10 and c >= len(marks) * step:  # noqa: PLR2004 - ten tenths
            goal = len(marks) * step
            marks.append(prev_t + (t - prev_t) * (goal - prev_c) / max(c - prev_c, 1))
        prev_t, prev_c = t, c
    return [round(step / max(b - a, 1e-9), 1) for a, b in itertools.pairwise(marks)]


# How the pre-queued jobs use the features whose drain is compared with the plain one; set
# after the preload, untimed, as schedule() would have left them. Our own schema's name.
SHAPES: dict[str, tuple[str, ...]] = {
    "plain": (),
    # Every job holds a unique key that it keeps for a minute after it succeeds, so the
    # flush also writes the kept keys.
    "unique": ("UPDATE {s}.jobs SET unique_key = 'k' || id, unique_hold = 60",),
    # Pairs: every second job depends on the one before it, so half the jobs wait and are
    # released by the flush that ends their dependency.
    "depends_on": (
        (
            "INSERT INTO {s}.job_dependencies (job_id, depends_on)"
            " SELECT j.id, j.id - 1 FROM {s}.jobs j, (SELECT min(id) AS lo FROM {s}.jobs) AS m"
            " WHERE (j.id - m.lo) % 2 = 1"
        ),
        (
            "UPDATE {s}.jobs SET worker_id = -1, waiting_on = 1"
            " WHERE id IN (SELECT job_id FROM {s}.job_dependencies)"
        ),
        "UPDATE {s}.jobs SET has_dependents = true WHERE id IN (SELECT depends_on FROM {s}.job_dependencies)",
    ),
    # Somebody wait()s for every job: each end is notified.
    "awaited": ("UPDATE {s}.jobs SET awaited = true",),
    # The queue has a concurrency limit of 50 (the limits phase drains it at C=50), so the
    # worker leases its slots (lease_slots, sql/011) and runs at most 50 of its jobs at once.
    "limited": ("INSERT INTO {s}.queue_limits (queue, concurrency) VALUES ('default', 50)",),
}


async def bench_drain(  # noqa: PLR0915 - one drain, its counters and its probe, in order
    dsn: str,
    params: Params,
    *,
    n: int,
    concurrency: int,
    big: bool = False,
    shape: str = "plain",
    metrics: str = "off",
    work_s: float = 0.0,
    probe: LoopProbe | None = None,
    dedicated: bool = True,
) -> dict[str, object]:
    """One drain of ``n`` pre-queued jobs at ``concurrency``; timing, cost per job, RSS.

    ``shape``: how the jobs use unique keys, dependencies or wait() (see SHAPES). The
    notifications that announce a job's end (``e:<id>``, for wait()) are counted on the
    channel during the drain: a plain drain must send none. ``metrics``: "off", "on" (the
    worker records Prometheus metrics) or "scrape" (and they are scraped over HTTP at 20/s;
    see ``_metrics``). ``work_s``: each job awaits that long instead of yielding once (the
    I/O-bound drains). ``probe``: a loop-lag probe that runs on this loop from the worker's
    report that it has started (and claims) until the database shows every job finished
    (``colocate``); the start-up before it (registration, LISTEN; ``pgqueue bench`` does the
    one-time ``gc.freeze()`` of its heap before its first phase) is reported as ``start_ms``.
    ``dedicated``: the worker runs as ``pgqueue worker`` does (``DEDICATED_TURNS``); False:
    with the defaults of a worker inside an application (``colocate``).
    """
    tracker = Tracker(n, work_s=work_s)
    timeout = max(params.drain_timeout_s, n / BIG_RATE_FLOOR) if big else params.drain_timeout_s
    show = params.progress and big
    samples: list[tuple[float, int]] = []
    async with AsyncExitStack() as stack:
        scheduler = await stack.enter_async_context(fresh_scheduler(dsn, tracker))
        await preload(scheduler, n, batch=params.enq_batch, progress=show)
        await scheduler.close()  # the preload's backends exit and publish their counters
        mon = await asyncpg.connect(dsn)
        stack.push_async_callback(mon.close)  # closed last: it reads the counters after the pool is gone
        remaining_sql = await _shape_jobs(mon, scheduler.schema, shape)
        ends = [0]

        def count_ends(_c: object, _pid: int, _channel: str, payload: object) -> None:
            ends[0] += str(payload).startswith("e:")

        await mon.add_listener(f"{scheduler.schema}_events", count_ends)
        await vacuum_and_checkpoint(mon)
        before = await snapshot(mon)
        await scheduler.open()  # the pool is open before the clock, as the peers connect first
        meter = await stack.enter_async_context(metered(metrics))  # a scraper is up before the clock
        rss_before, _ = rss_mb()
        take_turns = DEDICATED_TURNS if dedicated else None  # None: the default (colocate)
        worker = scheduler.worker(concurrency=concurrency, metrics=meter.metrics, take_turns=take_turns)
        persisted: tuple[float, float] | None = None  # wall clock, process CPU seconds
        with progress_bar(f"drain {n:,} at C={concurrency}", n, enabled=show) as bar:

            def bar_update(done: int, rate: float) -> None:
                if bar is not None:
                    bar.update(bar.task_ids[0], completed=done, rate=f"{rate:,.0f} jobs/s")

            async with anyio.create_task_group() as tg:
                t0, cpu0 = time.time(), time.process_time()
                await tg.start(worker.run)
                started_s = time.time() - t0
                if probe is not None:
                    await tg.start(probe.run)
                if big:
                    tg.start_soon(_sample, tracker, t0, samples, bar_update)
                with anyio.move_on_after(timeout):
                    await tracker.done.wait()
                    persisted = await _persisted(mon, remaining_sql, n)
                t_stop = time.time()
                if probe is not None:
                    probe.stop()
                rss_after, _ = rss_mb()
                # Before the worker closes its own connections (the listener's): see _dbcpu.
                backends_at_end = await database_backends_cpu_s(mon)
                await worker.shutdown()
                tg.cancel_scope.cancel()  # the sampler and the probe
        stop_s = time.time() - t_stop
        await mon.remove_listener(f"{scheduler.schema}_events", count_ends)
        await scheduler.close()  # its backends must exit before the "after" counters are read
        after = await snapshot(mon)
    out = _result(
        tracker,
        worker,
        n=n,
        concurrency=concurrency,
        times=(t0, None if persisted is None else persisted[0], t_stop, stop_s),
        cpu_s=None if persisted is None else persisted[1] - cpu0,
        cost=cost_per_job(n, before, after, backends_at_end=backends_at_end),
        rss=(rss_before, rss_after),
        tenths=_tenths([*samples, (tracker.last_end - t0, tracker.count)], n) if big else None,
    )
    out.update(end_notifications=ends[0], start_ms=round(started_s * 1000.0, 1))
    return out if metrics == "off" else {**out, "metrics": meter.report()}


async def _shape_jobs(mon: asyncpg.Connection, schema: str, shape: str) -> str:
    """Give the pre-queued jobs their ``shape``; the query of how many are not finished yet."""
    for statement in SHAPES[shape]:
        await mon.execute(statement.format(s=f'"{schema}"'))
    return (
        f'SELECT (SELECT count(*) FROM "{schema}".jobs) + $1'  # noqa: S608 - our own schema name
        f' - (SELECT count(*) FROM "{schema}".job_runs)'
    )


async def _persisted(mon: asyncpg.Connection, remaining_sql: str, n: int) -> tuple[float, float]:
    """Poll until the database shows every job finished; the wall clock and process CPU time then."""
    while True:
        if await mon.fetchval(remaining_sql, n) == 0:
            return time.time(), time.process_time()
        await anyio.sleep(POLL_S)


def _result(
    tracker: Tracker,
    worker: Worker,
    *,
    n: int,
    concurrency: int,
    times: tuple[float, float | None, float, float],
    cpu_s: float | None,
    cost: dict[str, object],
    rss: tuple[float | None, float | None],
    tenths: list[float] | None,
) -> dict[str, object]:
    """The drain's JSON object, keyed as the peers key theirs (plus cost and RSS)."""
    t0, t_persist, t_stop, stop_s = times
    rss_before, rss_after = rss
    _, rss_peak = rss_mb()
    out: dict[str, object] = {
        "n": n,
        "concurrency": concurrency,
        "done_handlers": tracker.count,
        "startup_s": round((tracker.first_start or t0) - t0, 4),
        "handlers_s": round(tracker.last_end - t0, 4) if tracker.last_end else None,
        "handlers_jps": round(tracker.count / max((tracker.last_end or time.time()) - t0, 1e-9), 1),
        "steady_jps": None if (steady := tracker.steady_jps()) is None else round(steady, 1),
        "stop_s": round(stop_s, 3),
        "claims": worker.claims,
        "flushes": worker.flushes,
    }
    if t_persist is not None:
        out["persisted_s"] = round(t_persist - t0, 4)
        out["jps"] = round(n / (t_persist - t0), 1)
    if cpu_s is not None:
        # This process's CPU (the worker, and any thread serving metrics): steadier than
        # the rate on a machine whose other tenants come and go.
        out["cpu_us_per_job"] = round(cpu_s / n * 1e6, 2)
    if t_persist is None:
        out["timed_out"] = True
        out["jps"] = round(tracker.count / (t_stop - t0), 1)
    out["cost"] = cost
    growth = None if rss_before is None or rss_after is None else round(rss_after - rss_before, 1)
    out["rss"] = {"before_mb": rss_before, "after_mb": rss_after, "growth_mb": growth, "peak_mb": rss_peak}
    if tenths is not None:
        out["tenths_jps"] = tenths
    return out
