"""Workload (e): two worker processes on one queue, draining the same pre-queued jobs.

One worker runs in this process, the other in a child process (``_peer``) started and
connected before the clock, so only the workers' own start-up is timed, as in the
single-worker drain. The clock stops when the database shows every job finished. The
jobs are shared by ``FOR UPDATE SKIP LOCKED``; each process reports how many it ran.
With one core per process this shows whether a second process adds throughput or only
contention.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import anyio
import asyncpg
from anyio.streams.buffered import BufferedByteReceiveStream

from ._harness import DEDICATED_TURNS, Params, Tracker, fresh_scheduler, preload, vacuum_and_checkpoint

__all__ = ["bench_two_workers"]

POLL_S = 0.01
LINE_MAX = 65536
START_TIMEOUT_S = 60.0  # the child imports pgqueue and opens a pool


async def bench_two_workers(dsn: str, params: Params, *, n: int, concurrency: int) -> dict[str, object]:
    """Drain ``n`` jobs with two processes, each one worker at ``concurrency``."""
    tracker = Tracker()
    async with fresh_scheduler(dsn, tracker) as scheduler:
        await preload(scheduler, n, batch=params.enq_batch)
        mon = await asyncpg.connect(dsn)
        try:
            await vacuum_and_checkpoint(mon)
            empty_sql = f'SELECT NOT EXISTS (SELECT FROM "{scheduler.schema}".jobs)'  # noqa: S608 - our own schema
            runs_sql = f'SELECT count(*) FROM "{scheduler.schema}".job_runs'  # noqa: S608 - our own schema
            command = [sys.executable, "-m", "pgqueue.bench._peer", dsn, str(concurrency)]
            async with await anyio.open_process(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
            ) as child:
                assert child.stdin is not None  # noqa: S101 - opened with pipes
                assert child.stdout is not None  # noqa: S101
                lines = BufferedByteReceiveStream(child.stdout)
                with anyio.fail_after(START_TIMEOUT_S):
                    ready = await lines.receive_until(b"\n", LINE_MAX)
                if ready != b"ready":
                    raise RuntimeError(f"second worker process did not start: {ready!r}")
                worker = scheduler.worker(concurrency=concurrency, take_turns=DEDICATED_TURNS)
                t_persist: float | None = None
                t0 = time.time()
                await child.stdin.send(b"go\n")
                async with anyio.create_task_group() as tg:
                    await tg.start(worker.run)
                    with anyio.move_on_after(params.drain_timeout_s):
                        while True:
                            if await mon.fetchval(empty_sql) and await mon.fetchval(runs_sql) >= n:
                                t_persist = time.time()
                                break
                            await anyio.sleep(POLL_S)
                    t_stop = time.time()
                    await worker.shutdown()
                await child.stdin.send(b"stop\n")
                with anyio.fail_after(START_TIMEOUT_S):
                    report = json.loads(await lines.receive_until(b"\n", LINE_MAX))
                    await child.wait()
            left = await mon.fetchval(runs_sql)
        finally:
            await mon.close()
    out: dict[str, object] = {
        "n": n,
        "processes": 2,
        "concurrency_each": concurrency,
        "handled_here": tracker.count,
        "handled_child": report.get("handled") if isinstance(report, dict) else None,
    }
    if t_persist is not None:
        out["persisted_s"] = round(t_persist - t0, 4)
        out["jps"] = round(n / (t_persist - t0), 1)
    else:
        out["timed_out"] = True
        out["runs_written"] = left
        out["jps"] = round(left / (t_stop - t0), 1)
    return out
