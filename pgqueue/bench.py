"""``make bench`` / ``pgqueue bench``: durable drain rate of no-op jobs, as one JSON line.

Method (the same as ``../shared/bench/peers/common.py``, so figures compare directly):
N jobs pre-queued in bulk (untimed), then ``VACUUM ANALYZE`` and ``CHECKPOINT``; one worker
at concurrency C in this process; the clock starts at the call that starts the worker and
stops when **the database** shows every job finished (hot table empty and N rows in the
run log, polled every 10 ms once the last handler ran). Handler-side rates are reported
too. Each phase runs in a freshly recreated database whose name must start with
``bench_``.

Server: ``--dsn``/``BENCH_DSN``; else the local server on 127.0.0.1:5432 when it answers;
else an embedded PostgreSQL under ``.pgqueue/bench-pgdata``. Timing thresholds belong
here, never in the test suite.
"""

from __future__ import annotations

import asyncio
import json
import platform
import socket
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg

from . import __version__
from ._devdb import embedded_dsn
from ._models import Job
from ._scheduler import Scheduler

__all__ = ["run_bench"]

PAYLOAD = {"user_id": 12345, "kind": "noop", "tags": ["a", "b"], "note": "small json payload"}
DB_NAME = "bench_pgqueue"
ENQ_BATCH = 1000
DRAIN_TIMEOUT_S = 120.0
LOCAL_DSN = f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}"


def with_database(dsn: str, name: str) -> str:
    """The same server and options, another database."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def default_dsn() -> str:
    """127.0.0.1:5432 when it answers, else an embedded server."""
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        root = Path.cwd() / ".pgqueue" / "bench-pgdata"
        return with_database(embedded_dsn(root), DB_NAME)
    return LOCAL_DSN


async def recreate_database(dsn: str) -> None:
    """DROP and CREATE the benchmark database (refuses names not starting with bench_)."""
    name = urlsplit(dsn).path.lstrip("/")
    if not name.startswith("bench_"):
        raise SystemExit(f"refusing to drop database {name!r}: the name must start with 'bench_'")
    admin = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


class Tracker:
    """Handler-side counts."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.first_start: float | None = None
        self.last_end = 0.0
        self.done = anyio.Event()

    async def handler(self, job: Job) -> None:
        if self.first_start is None:
            self.first_start = time.time()
        _ = job.params  # decode, as every peer's handler does
        await asyncio.sleep(0)
        self.count += 1
        self.last_end = time.time()
        if self.count >= self.expected:
            self.done.set()


async def bench_drain(dsn: str, n: int, concurrency: int) -> dict[str, Any]:
    """One drain of ``n`` pre-queued jobs at ``concurrency``."""
    await recreate_database(dsn)
    scheduler = Scheduler(dsn)
    tracker = Tracker(n)
    scheduler.register("noop", tracker.handler)
    async with scheduler:
        await scheduler.migrate()
        await scheduler.schedule_many("noop", ({"i": i, **PAYLOAD} for i in range(n)), chunk_size=ENQ_BATCH)
        mon = await asyncpg.connect(dsn)
        try:
            await mon.execute("VACUUM ANALYZE")
            await mon.execute("CHECKPOINT")
            worker = scheduler.worker(concurrency=concurrency)
            t0 = time.time()
            t_persist: float | None = None
            async with anyio.create_task_group() as tg:
                await tg.start(worker.run)
                with anyio.move_on_after(DRAIN_TIMEOUT_S):
                    await tracker.done.wait()
                    while True:
                        left = await mon.fetchval(
                            "SELECT (SELECT count(*) FROM pgqueue.jobs) + $1"
                            " - (SELECT count(*) FROM pgqueue.job_runs)",
                            n,
                        )
                        if left == 0:
                            t_persist = time.time()
                            break
                        await asyncio.sleep(0.01)
                t_stop = time.time()
                await worker.shutdown()
        finally:
            await mon.close()
    out: dict[str, Any] = {
        "n": n,
        "concurrency": concurrency,
        "done_handlers": tracker.count,
        "startup_s": round((tracker.first_start or t0) - t0, 4),
        "handlers_jps": round(tracker.count / max(tracker.last_end - t0, 1e-9), 1),
        "stop_s": round(time.time() - t_stop, 3),
        "claims": worker.claims,
        "flushes": worker.flushes,
    }
    if t_persist is not None:
        out["persisted_s"] = round(t_persist - t0, 4)
        out["jps"] = round(n / (t_persist - t0), 1)
    else:
        out["timed_out"] = True
    return out


async def server_info(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('server_version', 'synchronous_commit', 'fsync', 'shared_buffers', 'max_connections')"
        )
    finally:
        await conn.close()
    return {r["name"]: r["setting"] for r in rows}


async def _main(n: int, concurrencies: list[int], dsn: str | None) -> dict[str, Any]:
    target = dsn or default_dsn()
    results: dict[str, Any] = {}
    for c in concurrencies:
        results[f"drain_c{c}"] = await bench_drain(target, n, c)
    return {
        "system": "pgqueue",
        "version": __version__,
        "python": platform.python_version(),
        "loop": "asyncio",
        "server": await server_info(target),
        **results,
    }


def run_bench(
    *, n: int = 20_000, concurrencies: list[int] | None = None, dsn: str | None = None
) -> dict[str, Any]:
    """Run the benchmark and print its JSON line."""
    line = asyncio.run(_main(n, concurrencies or [10, 50], dsn))
    print(json.dumps(line), flush=True)
    return line


if __name__ == "__main__":
    import os

    run_bench(
        n=int(os.environ.get("BENCH_N", "20000")),
        concurrencies=[int(c) for c in os.environ.get("BENCH_CONCURRENCY", "10,50").split(",") if c],
        dsn=os.environ.get("BENCH_DSN"),
    )
    sys.exit(0)
