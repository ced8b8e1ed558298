"""The parts every workload shares: parameters, the no-op handler and its counts, set-up.

Parameters and their defaults are those of ``../shared/bench/peers/common.py`` (same
environment variable names too), so a pgqueue figure and a peer's figure measure the same
thing. The handler does what every peer's handler does: decode the params, yield once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel
import asyncpg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pgqueue import Job, Scheduler

from ._report import JsonObject, get_num
from ._server import recreate_database

__all__ = [
    "DEDICATED_TURNS",
    "JOB_TYPE",
    "PAYLOAD",
    "Params",
    "Tracker",
    "fresh_scheduler",
    "payload_for",
    "pct",
    "preload",
    "progress_bar",
    "vacuum_and_checkpoint",
]

DEDICATED_TURNS = False
"""``take_turns`` of the throughput phases' workers: as ``pgqueue worker`` runs one, alone on
its event loop (claims and flushes overlap; see *Sharing the event loop*). The ``colocate``
phase runs a worker with the defaults of one inside an application instead."""

JOB_TYPE = "noop"
PAYLOAD: dict[str, object] = {
    "user_id": 12345,
    "kind": "noop",
    "tags": ["a", "b"],
    "note": "small json payload",
}
PRELOAD_CALL = 20_000  # jobs per schedule_many call while preloading: bounds the encoded params held at once
STDERR = Console(stderr=True)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass(frozen=True, slots=True)
class Params:
    """Workload sizes; defaults and environment names as in the peers' ``common.py``."""

    n: int = field(default_factory=lambda: _env_int("BENCH_N", 20_000))
    """Jobs for the bulk enqueue and for each drain."""
    single_n: int = field(default_factory=lambda: _env_int("BENCH_SINGLE_N", 2000))
    enq_batch: int = field(default_factory=lambda: _env_int("BENCH_ENQ_BATCH", 1000))
    concurrencies: tuple[int, ...] = (10, 50)
    lat_n: int = field(default_factory=lambda: _env_int("BENCH_LAT_N", 200))
    lat_spacing_s: float = field(default_factory=lambda: _env_int("BENCH_LAT_SPACING_MS", 20) / 1000)
    lat_concurrency: int = field(default_factory=lambda: _env_int("BENCH_LAT_CONCURRENCY", 10))
    lat_warmup: int = field(default_factory=lambda: _env_int("BENCH_LAT_WARMUP", 5))
    drain_timeout_s: float = field(
        default_factory=lambda: float(os.environ.get("BENCH_DRAIN_TIMEOUT_S", "120"))
    )
    big_n: int = field(default_factory=lambda: _env_int("BENCH_BIG_N", 1_000_000))
    """Backlog of the long drain (``--big``)."""
    manage_runs: int = field(default_factory=lambda: _env_int("BENCH_MANAGE_RUNS", 1_000_000))
    """Finished jobs in the run log for the management phase (``manage``)."""
    manage_live: int = field(default_factory=lambda: _env_int("BENCH_MANAGE_LIVE", 100_000))
    """Live jobs for the management phase."""
    churn_n: int = field(default_factory=lambda: _env_int("BENCH_CHURN_N", 1_000_000))
    """Jobs run through the hot table before its size and the claim's plan are read (``churn``)."""
    churn_backlog: int = field(default_factory=lambda: _env_int("BENCH_CHURN_BACKLOG", 10_000))
    """Jobs kept queued during the churn phase."""
    memory_n: int = field(default_factory=lambda: _env_int("BENCH_MEMORY_N", 10_000))
    """Jobs drained by pgqueue.testing.drain on each backend (phase ``memory``)."""
    metrics_n: int | None = field(
        default_factory=lambda: (
            int(os.environ["BENCH_METRICS_N"]) if "BENCH_METRICS_N" in os.environ else None
        )
    )
    """Jobs per drain of the metrics phase (None: 2.5 × ``n``, 50,000 by default). Longer than
    the plain drain: a worker's one-time costs (the connection of its first queue-depth
    query) are spread over some 30 scrapes, as over a worker's life."""
    metrics_repeats: int = field(default_factory=lambda: _env_int("BENCH_METRICS_REPEATS", 5))
    """Rounds of the metrics phase (each: off, on, scraped, at every concurrency)."""
    colo_n: int = field(default_factory=lambda: _env_int("BENCH_COLO_N", 50_000))
    """Backlog drained while the loop-lag probe runs (phase ``colocate``)."""
    colo_rate: int = field(default_factory=lambda: _env_int("BENCH_COLO_RATE", 200))
    """Jobs per second enqueued one at a time while the worker runs them (``colocate``)."""
    colo_steady_s: float = field(default_factory=lambda: _env_float("BENCH_COLO_STEADY_S", 5.0))
    """How long the steady enqueue-and-run part of ``colocate`` lasts."""
    colo_baseline_s: float = field(default_factory=lambda: _env_float("BENCH_COLO_BASELINE_S", 1.0))
    """How long the probe runs alone, with the scheduler open and no worker (``colocate``)."""
    io_n_10ms: int = field(default_factory=lambda: _env_int("BENCH_IO_N_10MS", 40_000))
    """Jobs of the I/O-bound drain of 10 ms jobs at C=200: 2 s at its limit of 20,000/s (``iobound``)."""
    io_n_1ms: int = field(default_factory=lambda: _env_int("BENCH_IO_N_1MS", 100_000))
    """Jobs of the I/O-bound drain of 1 ms jobs at C=50: 2 s at its limit of 50,000/s (``iobound``)."""
    progress: bool = True
    """Progress bars on stderr for the long phases (preload and drain of the big backlog)."""

    def as_json(self) -> dict[str, object]:
        """The parameters as the peers report them (``params`` of the JSON line)."""
        return {
            "N": self.n,
            "SINGLE_N": self.single_n,
            "ENQ_BATCH": self.enq_batch,
            "CONCURRENCY": list(self.concurrencies),
            "LAT_N": self.lat_n,
            "LAT_SPACING_MS": self.lat_spacing_s * 1000,
            "LAT_CONCURRENCY": self.lat_concurrency,
            "BIG_N": self.big_n,
        }


def payload_for(i: int) -> dict[str, object]:
    """The peers' payload: a small JSON object."""
    return {"i": i, **PAYLOAD}


def pct(values: list[float], p: float) -> float:
    """Percentile with linear interpolation (numpy's default), as ``common.pct``."""
    if not values:
        return float("nan")
    xs = sorted(values)
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class Tracker:
    """Handler-side counts and latencies; its :meth:`handler` is the no-op job.

    One tracker per phase; the event fires when ``expected`` handlers have finished.
    ``work_s`` turns the job into an I/O-bound one that awaits that long (``iobound``);
    at 0 it yields once, as the peers' job does.
    """

    def __init__(self, expected: int = 0, *, record_latency: bool = False, work_s: float = 0.0) -> None:
        self.work_s = work_s
        self.reset(expected, record_latency=record_latency)

    def reset(self, expected: int, *, record_latency: bool = False) -> None:
        """Start counting afresh (the latency phase resets between warm-up and measurement)."""
        self.expected = expected
        self.record_latency = record_latency
        self.count = 0
        self.first_start: float | None = None
        self.last_end = 0.0
        self.latencies_ms: list[float] = []
        self.done = anyio.Event()
        # When the 10th and the 90th percent of the expected jobs ended (I/O-bound phases:
        # the rate between them is the steady one, without the start-up and the tail).
        self.steady_marks = {expected // 10: 0.0, expected * 9 // 10: 0.0} if self.work_s else {}

    def steady_jps(self) -> float | None:
        """Jobs/s between the 10th and the 90th percent of the expected jobs (I/O-bound phases)."""
        marks = sorted(self.steady_marks.items())
        if len(marks) != 2:  # noqa: PLR2004 - the two marks (fewer: too few jobs to tell)
            return None
        (a, t_a), (b, t_b) = marks
        return (b - a) / (t_b - t_a) if t_b > t_a > 0 else None

    async def handler(self, job: Job) -> None:
        """The no-op job: note the entry time, decode the params, yield once."""
        now = time.time()
        if self.first_start is None:
            self.first_start = now
        params = job.params  # decode, as every peer's handler does
        if self.record_latency and isinstance(params, dict) and not params.get("warmup"):
            t_enq = params.get("t_enq")
            if isinstance(t_enq, float):
                self.latencies_ms.append((now - t_enq) * 1000.0)
        await asyncio.sleep(self.work_s)  # at 0, exactly the peers' job body (common.py)
        self.count += 1
        self.last_end = time.time()
        if self.count in self.steady_marks:
            self.steady_marks[self.count] = self.last_end
        if self.expected and self.count >= self.expected:
            self.done.set()


@asynccontextmanager
async def fresh_scheduler(dsn: str, tracker: Tracker) -> AsyncIterator[Scheduler]:
    """Recreate the database, migrate it, and yield an open scheduler with the no-op job."""
    await recreate_database(dsn)
    scheduler = Scheduler(dsn)
    scheduler.register(JOB_TYPE, tracker.handler)
    async with scheduler:
        await scheduler.migrate()
        yield scheduler


@contextmanager
def progress_bar(description: str, total: int, *, enabled: bool) -> Iterator[Progress | None]:
    """A rich progress bar on stderr (None when disabled); the caller advances task 0."""
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=STDERR, transient=True) as bar:
        bar.add_task(description, total=total, rate="")
        yield bar


async def preload(scheduler: Scheduler, n: int, *, batch: int, progress: bool = False) -> None:
    """Queue ``n`` no-op jobs in bulk (untimed): ``schedule_many`` with ``batch`` jobs per statement."""
    with progress_bar("preload", n, enabled=progress and n > PRELOAD_CALL) as bar:
        for start in range(0, n, PRELOAD_CALL):
            stop = min(n, start + PRELOAD_CALL)
            await scheduler.schedule_many(
                JOB_TYPE, (payload_for(i) for i in range(start, stop)), chunk_size=batch
            )
            if bar is not None:
                bar.update(bar.task_ids[0], completed=stop)


async def vacuum_and_checkpoint(mon: asyncpg.Connection) -> None:
    """As the peers do before a drain: fresh statistics, and no dirty pages left from the preload."""
    await mon.execute("VACUUM ANALYZE")
    with contextlib.suppress(asyncpg.PostgresError):  # needs superuser or pg_checkpoint, as for the peers
        await mon.execute("CHECKPOINT")


@dataclass(frozen=True)
class Paired:
    """Runs of several modes, taken in alternating rounds, and their rates (``jps``)."""

    runs: dict[str, list[JsonObject]]

    def jps(self, mode: str) -> list[float]:
        """The mode's rates, round by round."""
        return [get_num(r, "jps") or 0.0 for r in self.runs[mode]]

    def median(self, mode: str) -> float | None:
        """The mode's median rate."""
        rates = self.jps(mode)
        return round(statistics.median(rates), 1) if rates else None

    def ratio(self, mode: str, against: str) -> float | None:
        """The median of the rounds' ratios ``mode`` / ``against``: steadier than a ratio of medians."""
        pairs = zip(self.jps(mode), self.jps(against), strict=True)
        ratios = [a / b for a, b in pairs if b]
        return round(statistics.median(ratios), 3) if ratios else None


async def alternate(
    modes: tuple[str, ...], repeats: int, run: Callable[[str, int], Awaitable[JsonObject]]
) -> Paired:
    """``run(mode, round)`` for each mode, ``repeats`` rounds, the order reversed every other round.

    The machine's speed drifts within minutes: alternating and pairing the rounds keeps
    the drift out of the ratios.
    """
    runs: dict[str, list[JsonObject]] = {m: [] for m in modes}
    for round_ in range(repeats):
        for mode in modes if round_ % 2 == 0 else modes[::-1]:
            runs[mode].append(await run(mode, round_))
    return Paired(runs)
