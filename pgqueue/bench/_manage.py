"""Workload (h): job management on a large history: get_job, list_jobs pages, stats.

The database gets ``manage_runs`` finished jobs in ``job_runs`` (1,000,000 by default) and
``manage_live`` live ones in ``jobs`` (100,000), written directly with ``generate_series``
so the setup takes seconds, not a drain. Then, timed one call at a time: ``get_job`` of
random live and finished ids, ``list_jobs`` pages (the first page and pages deep in the
history, through their cursors, with and without a state filter) and ``stats()``.
Then the dashboard (``pgqueue[web]``), as a browser asks for it, through the ASGI app in
this process (no network, so the figure is the app's and the database's time): the
overview (``GET /``: stats and the last hour's activity), the first job-list page
(``GET /jobs``) and the API's ``GET /api/jobs``. The finished runs are spread over the
last 14 days (one every 1.2 s, newest now), as a retention window keeps them, and a
retention round moves them into their day partitions, as the maintenance leader keeps
them; the overview's last hour reads its ~3,000 runs from today's partitions.
Reported: p50 and p99 in milliseconds. Opt-in (phase ``manage``): the setup writes a
gigabyte of history.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable

import asyncpg

from pgqueue._scheduler import Scheduler
from pgqueue.maintenance import Retention

from ._harness import JOB_TYPE, Params, Tracker, fresh_scheduler, pct

__all__ = ["bench_manage"]

CALLS = 200  # timed calls of each kind


async def _timed(call: Callable[[], Awaitable[object]]) -> dict[str, float]:
    times: list[float] = []
    for _ in range(CALLS):
        t0 = time.perf_counter()
        await call()
        times.append((time.perf_counter() - t0) * 1000.0)
    return {"p50_ms": round(pct(times, 50), 3), "p99_ms": round(pct(times, 99), 3)}


async def bench_manage(dsn: str, params: Params) -> dict[str, object]:
    """p50/p99 of get_job, list_jobs and stats over a large history."""
    runs_n, live_n = params.manage_runs, params.manage_live
    async with fresh_scheduler(dsn, Tracker()) as scheduler:
        schema = f'"{scheduler.schema}"'
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                f"""INSERT INTO {schema}.job_runs (job_id, worker_id, inserted_at, run_at, started_at,
                        finished_at, attempt, priority, queue, type, outcome, params)
                    SELECT i, 1, t, t, t, t, 1, 0, 'default', $1,
                           CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'succeeded' END, '{{"i": 1}}'
                    FROM generate_series(1, $2::bigint) AS i,
                         LATERAL (SELECT now() - ($2::bigint - i) * interval '1.2 s' AS t) AS at""",  # noqa: S608 - our own schema
                JOB_TYPE,
                runs_n,
            )
            await conn.execute(
                f"""INSERT INTO {schema}.jobs (id, queue, type, params, run_at, delayed)
                    SELECT i, 'default', $1, '{{"i": 1}}', now() + interval '1 hour', true
                    FROM generate_series($2::bigint + 1, $2::bigint + $3::bigint) AS i""",  # noqa: S608 - our own schema
                JOB_TYPE,
                runs_n,
                live_n,
            )
        finally:
            await conn.close()
        # As the maintenance leader leaves a long history: in day partitions, not in DEFAULT.
        store = await scheduler.open()
        await Retention(store).run_once()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"VACUUM ANALYZE {schema}.job_runs")
            await conn.execute(f"VACUUM ANALYZE {schema}.jobs")
        finally:
            await conn.close()
        rng = random.Random(7)
        top = runs_n + live_n
        deep = (await scheduler.list_jobs(limit=500)).cursor  # a cursor inside the live part
        cursors: list[str | None] = [None, deep]
        page = await scheduler.list_jobs(limit=500, cursor=deep)
        for _ in range(live_n // 500 + 2):  # walk into the finished history
            if page.cursor is None:
                break
            page = await scheduler.list_jobs(limit=500, cursor=page.cursor)
        cursors.append(page.cursor)
        return {
            "runs": runs_n,
            "live": live_n,
            "get_job": await _timed(lambda: scheduler.get_job(rng.randint(1, top))),
            "list_jobs": await _timed(lambda: scheduler.list_jobs(limit=50, cursor=rng.choice(cursors))),
            "list_jobs_failed": await _timed(lambda: scheduler.list_jobs(state="failed", limit=50)),
            "stats": await _timed(scheduler.stats),
            **await _dashboard(scheduler),
        }


async def _dashboard(scheduler: Scheduler) -> dict[str, object]:
    """p50/p99 of the dashboard's overview, first job-list page and API list, in process."""
    try:
        import httpx2  # noqa: PLC0415 - the web extra is optional

        from pgqueue.web import create_app  # noqa: PLC0415
    except ImportError:
        return {}
    transport = httpx2.ASGITransport(app=create_app(scheduler))
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:

        def get(path: str) -> Callable[[], Awaitable[object]]:
            async def call() -> None:
                response = await client.get(path)
                response.raise_for_status()

            return call

        return {
            "page_overview": await _timed(get("/")),
            "page_jobs": await _timed(get("/jobs")),
            "api_jobs": await _timed(get("/api/jobs?limit=50")),
        }
