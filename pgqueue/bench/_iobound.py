"""Workload (r): jobs that wait on I/O, against the physical limit of their concurrency.

Most jobs wait on something (an HTTP call, a query) rather than compute. A job that
awaits ``W`` seconds can run at most ``C / W`` times a second at concurrency ``C``: that
is the physical limit, and what the worker's own overhead must not eat into. Two cases:

- ``W`` = 10 ms at C=200 (limit 20,000 jobs/s), ``io_n_10ms`` jobs (40,000: 2 s at the limit);
- ``W`` = 1 ms at C=50 (limit 50,000 jobs/s), ``io_n_1ms`` jobs (100,000: 2 s at the limit).

Each is (b)'s drain (:func:`~pgqueue.bench._drain.bench_drain`: pre-queued in bulk, ``VACUUM
ANALYZE`` and ``CHECKPOINT``, one worker with default settings, the clock from the worker's
start until the database shows every job finished) with a handler that does
``await asyncio.sleep(W)``. Reported: jobs/s and ``fraction``, jobs/s ÷ the limit. The
issue asks for a fraction of at least 0.95 with 10 ms jobs at C=200. ``steady_fraction``
is the rate between the moments the 10th and the 90th percent of the jobs ended, over the
limit: the drain without its start-up (registration, LISTEN, the first claims) and its tail.

The event loop itself does not reach the limit: a sleep wakes late by the loop's timer
granularity (asyncio's selector loop rounds each wait up to a whole millisecond) and by
whatever else runs. So each case first measures the loop's own ceiling in this process:
C tasks doing nothing but ``await asyncio.sleep(W)`` in a loop for as long as the drain
would take at the limit (``CEILING_MIN_S`` to ``CEILING_S``), no
queue and no database (``loop_ceiling``, as a fraction of the limit), and reports the
drain against it too (``of_ceiling``): the share of what the loop allows that the worker
delivers.
"""

from __future__ import annotations

import asyncio
import time

import anyio

from ._drain import bench_drain
from ._harness import STDERR, Params
from ._report import JsonObject, get_num

__all__ = ["CASES", "TARGET_FRACTION", "bench_iobound", "iobound_rows"]

CASES = (("w10ms_c200", 0.010, 200), ("w1ms_c50", 0.001, 50))
"""(key, seconds each job waits, concurrency)."""
TARGET_FRACTION = 0.95  # of the limit, for 10 ms jobs at C=200
TARGET_CASE = "w10ms_c200"
CEILING_S = 1.0  # the loop-only run lasts as long as the drain would at the limit, within these
CEILING_MIN_S = 0.2


async def loop_ceiling(wait_s: float, concurrency: int, seconds: float = CEILING_S) -> float:
    """Sleeps of ``wait_s`` completed per second by ``concurrency`` tasks on this loop, nothing else."""
    done = 0
    end = time.perf_counter() + seconds

    async def sleeper() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await asyncio.sleep(wait_s)
            done += 1

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(sleeper)
    return done / (time.perf_counter() - t0)


def _jobs(params: Params, key: str) -> int:
    return params.io_n_10ms if key == "w10ms_c200" else params.io_n_1ms


async def bench_iobound(dsn: str, params: Params) -> JsonObject:
    """One drain per case: the rate and its fraction of ``C / W``."""
    out: JsonObject = {}
    for key, wait_s, concurrency in CASES:
        n = _jobs(params, key)
        limit = concurrency / wait_s
        STDERR.log(
            f"iobound: the loop alone, then drain {n:,} jobs of {wait_s * 1000:g} ms at C={concurrency}"
        )
        seconds = min(CEILING_S, max(CEILING_MIN_S, n / limit))
        ceiling = await loop_ceiling(wait_s, concurrency, seconds) / limit
        drain = await bench_drain(dsn, params, n=n, concurrency=concurrency, work_s=wait_s)
        jps = get_num(drain, "jps")
        cost = drain.get("cost")
        out[key] = {
            "wait_ms": wait_s * 1000,
            "concurrency": concurrency,
            "n": n,
            "limit_jps": round(limit),
            "jps": jps,
            "fraction": None if jps is None else round(jps / limit, 3),
            "steady_fraction": None
            if (steady := get_num(drain, "steady_jps")) is None
            else round(steady / limit, 3),
            "loop_ceiling": round(ceiling, 3),
            "of_ceiling": None if jps is None else round(jps / limit / ceiling, 3),
            "timed_out": bool(drain.get("timed_out")),
            "handlers_jps": drain.get("handlers_jps"),
            "cpu_us_per_job": drain.get("cpu_us_per_job"),
            "db_cpu_us_per_job": cost.get("db_cpu_us_per_job") if isinstance(cost, dict) else None,
        }
    return out


def iobound_rows(line: JsonObject) -> list[tuple[str, str, str]]:
    """The table's rows for the iobound phase, with the issue's target for 10 ms jobs at C=200."""
    phase = line.get("iobound")
    if not isinstance(phase, dict):
        return []
    rows = []
    for key, wait_s, concurrency in CASES:
        if not isinstance(case := phase.get(key), dict):
            continue
        fraction = get_num(case, "fraction")
        details = (
            f"{get_num(case, 'jps') or 0:,.0f} of {case.get('limit_jps'):,} jobs/s ({case.get('n')} jobs; "
            f"between the 10th and the 90th percent of them {case.get('steady_fraction')} of the limit); "
            f"the loop alone: {case.get('loop_ceiling')} of the limit, "
            f"the drain {case.get('of_ceiling')} of that"
        )
        if key == TARGET_CASE:
            met = fraction is not None and fraction >= TARGET_FRACTION
            details += f"; target ≥ {TARGET_FRACTION}: {'met' if met else 'NOT met'}"
        rows.append(
            (f"I/O-bound {wait_s * 1000:g} ms × C={concurrency}", f"{fraction} of the limit", details)
        )
    return rows
