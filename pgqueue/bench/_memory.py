"""Workload (j): the in-memory backend, what applications' tests run on.

``memory_n`` no-op jobs (10,000 by default) are queued in bulk (untimed), then drained by
``pgqueue.testing.drain``, which runs them one at a time in the calling task as a test
does; the same on PostgreSQL (a fresh database) for the ratio, and a worker's drain of the
in-memory backend for reference. Reported: seconds and jobs/s of each, and
``memory_vs_postgres``: how many times faster the in-memory drain is.
"""

from __future__ import annotations

import time

from pgqueue import Scheduler
from pgqueue.testing import drain

from ._harness import JOB_TYPE, Params, Tracker, fresh_scheduler, preload

__all__ = ["bench_memory"]


async def _timed_drain(scheduler: Scheduler, n: int) -> dict[str, object]:
    t0 = time.perf_counter()
    runs = await drain(scheduler, max_runs=n)
    elapsed = time.perf_counter() - t0
    return {"n": len(runs), "s": round(elapsed, 4), "jps": round(len(runs) / elapsed, 1)}


async def _worker_drain(scheduler: Scheduler, tracker: Tracker, concurrency: int) -> dict[str, object]:
    import anyio  # noqa: PLC0415 - the task group only this measurement needs

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        worker = scheduler.worker(concurrency=concurrency, poll_interval=3600)
        await tg.start(worker.run)
        await tracker.done.wait()
        await worker.shutdown()
    elapsed = time.perf_counter() - t0
    return {"n": tracker.count, "s": round(elapsed, 4), "jps": round(tracker.count / elapsed, 1)}


async def bench_memory(dsn: str, params: Params) -> dict[str, object]:
    """The in-memory drain of ``memory_n`` jobs against the same drain on PostgreSQL."""
    n = params.memory_n
    memory = Scheduler.in_memory()
    memory.register(JOB_TYPE, Tracker(n).handler)
    await preload(memory, n, batch=params.enq_batch)
    mem = await _timed_drain(memory, n)

    tracker = Tracker(n)
    worker_memory = Scheduler.in_memory()
    worker_memory.register(JOB_TYPE, tracker.handler)
    await preload(worker_memory, n, batch=params.enq_batch)
    by_worker = await _worker_drain(worker_memory, tracker, params.concurrencies[0])

    async with fresh_scheduler(dsn, Tracker(n)) as pg:
        await preload(pg, n, batch=params.enq_batch)
        on_pg = await _timed_drain(pg, n)
    ratio = float(str(on_pg["s"])) / max(float(str(mem["s"])), 1e-9)
    return {
        "memory": mem,
        "postgres": on_pg,
        "memory_worker": by_worker,
        "memory_vs_postgres": round(ratio, 1),
    }
