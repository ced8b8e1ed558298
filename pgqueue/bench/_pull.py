"""Workload (p): a pull consumer's drain against the worker's.

Both drain ``n`` pre-queued no-op jobs (b's preload, ``VACUUM ANALYZE`` and ``CHECKPOINT``
before the clock). The worker's is (b)'s drain at C=50. The pull consumer is this process
doing what an application would: ``claim(100)``, then every lease's ``finish()`` at once
(``asyncio.gather``, so they share one write), until a claim comes back empty; the clock
stops when the last finish returns, which is when it is written. No handler runs: the
pull drain measures leasing and reporting, which is what it costs next to a worker.

The two alternate (``BENCH_PULL_REPEATS`` rounds, the order swapped each round) and the
ratio is the median of each round's ratio. The issue asks for at least 0.5.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import asyncpg

from ._harness import STDERR, Params, Tracker, alternate, fresh_scheduler, preload, vacuum_and_checkpoint
from ._report import JsonObject, get_num

__all__ = ["CLAIM_N", "CONCURRENCY", "bench_pull", "pull_rows"]

CONCURRENCY = 50  # the worker's drain it is compared with
CLAIM_N = 100  # leases per claim
QUEUES = ("default",)  # named, as an application names its queues (None adds a look-up)
DEFAULT_REPEATS = 3
MODES = ("worker", "pull")

Drain = Callable[..., Awaitable[JsonObject]]
"""``bench_drain`` (passed in, as the limits phase takes it)."""


async def pull_drain(dsn: str, params: Params, n: int) -> JsonObject:
    """One pull drain of ``n`` pre-queued jobs: claims, finishes, seconds and jobs/s."""
    async with fresh_scheduler(dsn, Tracker(n)) as scheduler:
        await preload(scheduler, n, batch=params.enq_batch)
        mon = await asyncpg.connect(dsn)
        try:
            await vacuum_and_checkpoint(mon)
        finally:
            await mon.close()
        claims = done = 0
        t0, cpu0 = time.time(), time.process_time()
        while True:
            leases = await scheduler.claim(CLAIM_N, queues=QUEUES)
            claims += 1
            if not leases:
                break
            await asyncio.gather(*(lease.finish() for lease in leases))
            done += len(leases)
        elapsed, cpu = time.time() - t0, time.process_time() - cpu0
    return {
        "n": n,
        "done": done,
        "claims": claims,
        "persisted_s": round(elapsed, 4),
        "jps": round(done / max(elapsed, 1e-9), 1),
        "cpu_us_per_job": round(cpu / max(done, 1) * 1e6, 2),
    }


async def bench_pull(target: str, params: Params, bench_drain: Drain) -> JsonObject:
    """The worker's drain at C=50 and the pull drain, alternating; medians and the paired ratio."""
    repeats = int(os.environ.get("BENCH_PULL_REPEATS", DEFAULT_REPEATS))

    async def drain(mode: str, round_: int) -> JsonObject:
        STDERR.log(f"pull phase, {mode}: drain {params.n:,}, round {round_ + 1}")
        if mode == "pull":
            return await pull_drain(target, params, params.n)
        return await bench_drain(target, params, n=params.n, concurrency=CONCURRENCY)

    paired = await alternate(MODES, repeats, drain)
    runs = paired.runs
    return {
        "n": params.n,
        "claim_n": CLAIM_N,
        "concurrency": CONCURRENCY,
        "repeats": repeats,
        "worker_jps": paired.median("worker"),
        "pull_jps": paired.median("pull"),
        "pull_vs_worker": paired.ratio("pull", "worker"),
        "jps": {m: [round(x) for x in paired.jps(m)] for m in MODES},
        "done": [r.get("done") for r in runs["pull"]],
        "cpu_us_per_job": {m: [get_num(r, "cpu_us_per_job") for r in rs] for m, rs in runs.items()},
    }


def pull_rows(line: JsonObject) -> list[tuple[str, str, str]]:
    """The table's row for the pull phase."""
    phase = line.get("pull")
    if not isinstance(phase, dict):
        return []
    details = (
        f"worker {get_num(phase, 'worker_jps') or 0:,.0f}, pull {get_num(phase, 'pull_jps') or 0:,.0f} "
        f"jobs/s (medians of {phase.get('repeats')} rounds of {phase.get('n')} jobs; worker at "
        f"C={CONCURRENCY}, pull claim({CLAIM_N}) + finish)"
    )
    return [("drain (pull consumer)", f"{get_num(phase, 'pull_vs_worker')}× worker", details)]
