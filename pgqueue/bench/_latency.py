"""Workload (c): pickup latency of an idle worker, as the peers' ``measure_latency``.

A worker (concurrency ``lat_concurrency``) starts on an empty queue and idles for 0.5 s.
A second scheduler, with its own pool (the peers enqueue from a separate connection),
sends ``lat_warmup`` jobs that are not counted, waits for them and 0.5 s more, then
``lat_n`` jobs one at a time on a fixed grid of ``lat_spacing_s``. Each payload carries
``time.time()`` taken just before the enqueue call; the handler records ``time.time()``
on entry. The difference covers the INSERT, the NOTIFY, the worker's wake-up, its claim
and the dispatch to a runner.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import anyio

from pgqueue import Scheduler

from ._harness import DEDICATED_TURNS, JOB_TYPE, PAYLOAD, Params, Tracker, fresh_scheduler, pct

__all__ = ["bench_latency"]

IDLE_S = 0.5  # the worker idles this long before the first job: it must be waiting, not starting
SETTLE_S = 0.5  # pause after the warm-up, as the peers do
WAIT_S = 30.0  # ceiling for the last jobs to arrive


async def bench_latency(dsn: str, params: Params) -> dict[str, object]:
    """Percentiles of the pickup latency in milliseconds."""
    tracker = Tracker(params.lat_warmup, record_latency=True)
    async with fresh_scheduler(dsn, tracker) as scheduler:
        worker = scheduler.worker(concurrency=params.lat_concurrency, take_turns=DEDICATED_TURNS)
        producer = Scheduler(dsn)  # a separate pool, as an application would have: defaults
        producer.register(JOB_TYPE, tracker.handler)
        async with producer, anyio.create_task_group() as tg:
            await tg.start(worker.run)
            await anyio.sleep(IDLE_S)
            for i in range(params.lat_warmup):
                await producer.schedule(
                    JOB_TYPE, {"i": -1 - i, "t_enq": time.time(), "warmup": True, **PAYLOAD}
                )
                await anyio.sleep(params.lat_spacing_s)
            with anyio.move_on_after(WAIT_S):
                await tracker.done.wait()
            await anyio.sleep(SETTLE_S)

            tracker.reset(params.lat_n, record_latency=True)
            enqueue_ms: list[float] = []
            base = time.perf_counter()
            for i in range(params.lat_n):
                delay = base + i * params.lat_spacing_s - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)  # the peers' grid loop (common.py), step for step
                t_enq = time.time()
                await producer.schedule(JOB_TYPE, {"i": i, "t_enq": t_enq, **PAYLOAD})
                enqueue_ms.append((time.time() - t_enq) * 1000.0)
            with anyio.move_on_after(WAIT_S):
                await tracker.done.wait()
            await worker.shutdown()
    lat = tracker.latencies_ms
    return {
        "n": params.lat_n,
        "seen": len(lat),
        "p50_ms": round(pct(lat, 50), 2),
        "p95_ms": round(pct(lat, 95), 2),
        "p99_ms": round(pct(lat, 99), 2),
        "max_ms": round(max(lat), 2) if lat else None,
        "mean_ms": round(statistics.fmean(lat), 2) if lat else None,
        "enqueue_call_p50_ms": round(pct(enqueue_ms, 50), 2),
    }
