"""Workload (a): enqueue rate, one job at a time and in bulk.

As in the peers' ``bench_enqueue``: one fresh database; ``single_n`` jobs through
``scheduler.schedule`` awaiting each (one round trip per job: the INSERT and its
``pg_notify`` are one statement), then ``n`` jobs through ``scheduler.schedule_many`` in
chunks of ``enq_batch``. Encoding the params is part of the timed work, as the peers'
``json.dumps`` is. The scheduler's pool is open (and migrated) before the clock starts,
as the peers connect first.
"""

from __future__ import annotations

import time

from ._harness import JOB_TYPE, Params, Tracker, fresh_scheduler, payload_for

__all__ = ["bench_enqueue"]


def _rate(n: int, seconds: float) -> dict[str, object]:
    return {"n": n, "s": round(seconds, 4), "jps": round(n / seconds, 1)}


async def bench_enqueue(dsn: str, params: Params) -> dict[str, object]:
    """``enqueue_single`` and ``enqueue_batch`` results, keyed as the peers key them."""
    async with fresh_scheduler(dsn, Tracker()) as scheduler:
        t0 = time.perf_counter()
        for i in range(params.single_n):
            await scheduler.schedule(JOB_TYPE, payload_for(i))
        single = time.perf_counter() - t0

        t0 = time.perf_counter()
        await scheduler.schedule_many(
            JOB_TYPE, (payload_for(i) for i in range(params.n)), chunk_size=params.enq_batch
        )
        bulk = time.perf_counter() - t0
    return {"enqueue_single": _rate(params.single_n, single), "enqueue_batch": _rate(params.n, bulk)}
