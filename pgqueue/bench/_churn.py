"""Workload (l): many jobs through the hot table, then its size and the claim's plan.

Method: one worker at concurrency C drains while this process keeps a standing backlog of
about ``backlog`` jobs queued (it tops the queue up in ``schedule_many`` calls), until
``total`` jobs have been through; then it waits for the queue to empty, stops the worker,
queues ``backlog`` jobs once more (the claim's plan is checked on a table in use, not on an
empty one) and reads:

- the hot table's heap and index sizes (``pg_relation_size``, ``pg_indexes_size``), which
  show whether churn bloats it: the leader's vacuum must keep dead tuples reusable;
- the claim statement's plan (``EXPLAIN`` of ``job_claim_many`` as workers run it, in a
  rolled-back transaction): it must read the claim and due indexes, never scan the table.

The figures are compared with the documented bound in the README (``HOT_TABLE_BOUND_MB``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import anyio
import asyncpg

from pgqueue import Scheduler
from pgqueue._registry import DEFAULT_QUEUE
from pgqueue.store.postgres import PostgresStore

from ._harness import DEDICATED_TURNS, JOB_TYPE, Params, Tracker, fresh_scheduler, payload_for, progress_bar
from ._report import JsonObject

__all__ = ["HOT_TABLE_BOUND_MB", "bench_churn", "churn", "claim_plan_scans"]

HOT_TABLE_BOUND_MB = 32.0  # README: the hot table with its indexes after any number of jobs, 10k queued
TOP_UP = 2000  # jobs per schedule_many call while keeping the backlog
POLL_S = 0.01


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan's nodes, depth first."""
    out = [plan]
    for child in plan.get("Plans", []):
        out += _nodes(child)
    return out


async def claim_plan_scans(store: PostgresStore, conn: asyncpg.Connection, queue: str) -> list[str]:
    """The scans of the claim statement's plan, as ``"Node Type:index name"`` strings.

    Run with ``ANALYZE`` inside a transaction that is rolled back, so nothing is claimed; a
    throwaway worker row makes the claim's own lock on it succeed.
    """
    worker_id, _ = await store.worker_register([queue])
    try:
        tx = conn.transaction()
        await tx.start()
        try:
            plan_json = await conn.fetchval(
                "EXPLAIN (FORMAT JSON, ANALYZE) " + store.q.job_claim_many, [queue], 500, worker_id
            )
        finally:
            await tx.rollback()
    finally:
        await store.worker_deregister(worker_id)
    nodes = _nodes(json.loads(plan_json)[0]["Plan"])
    return sorted(
        {f"{n['Node Type']}:{n.get('Index Name') or ''}" for n in nodes if "Scan" in n["Node Type"]}
    )


async def _sizes(conn: asyncpg.Connection, schema: str) -> dict[str, float]:
    table = f'"{schema}".jobs'
    row = await conn.fetchrow(
        "SELECT pg_relation_size($1::regclass), pg_indexes_size($1::regclass),"
        " pg_total_relation_size($1::regclass)",
        table,
    )
    assert row is not None  # noqa: S101 - a SELECT of scalars returns a row
    mb = 1024 * 1024
    return {"heap_mb": row[0] / mb, "indexes_mb": row[1] / mb, "total_mb": row[2] / mb}


async def churn(
    scheduler: Scheduler,
    conn: asyncpg.Connection,
    *,
    total: int,
    backlog: int,
    concurrency: int,
    on_progress: Callable[[int], None] | None = None,
) -> JsonObject:
    """Run ``total`` jobs of type ``noop`` (registered by the caller) through; measure (see module)."""
    store = await scheduler.open()
    assert isinstance(store, PostgresStore)  # noqa: S101 - the benchmark runs on PostgreSQL
    schema = scheduler.schema
    count_live = f'SELECT count(*) FROM "{schema}".jobs'  # noqa: S608 - our own schema
    left = f'SELECT $1 - (SELECT count(*) FROM "{schema}".job_runs) + (SELECT count(*) FROM "{schema}".jobs)'  # noqa: S608 - our own schema
    worker = scheduler.worker(concurrency=concurrency, take_turns=DEDICATED_TURNS)
    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        sent = 0
        while sent < total:
            live = int(await conn.fetchval(count_live))
            if live >= backlog:
                await anyio.sleep(POLL_S)
                continue
            n = min(TOP_UP, backlog - live, total - sent)
            await scheduler.schedule_many(JOB_TYPE, (payload_for(sent + i) for i in range(n)))
            sent += n
            if on_progress is not None:
                on_progress(sent)
        while True:  # until the database shows every job finished
            if not await conn.fetchval(left, total):
                break
            await anyio.sleep(POLL_S)
        seconds = time.perf_counter() - t0
        with anyio.fail_after(60):
            await worker.shutdown()
    drained = await _sizes(conn, schema)
    await scheduler.schedule_many(JOB_TYPE, (payload_for(i) for i in range(backlog)))
    await conn.execute(f'ANALYZE "{schema}".jobs')
    scans = await claim_plan_scans(store, conn, DEFAULT_QUEUE)
    queued = await _sizes(conn, schema)
    return {
        "jobs": total,
        "backlog": backlog,
        "concurrency": concurrency,
        "seconds": round(seconds, 2),
        "jps": round(total / seconds, 1),
        "drained": {k: round(v, 2) for k, v in drained.items()},
        "queued": {k: round(v, 2) for k, v in queued.items()},
        "bound_mb": HOT_TABLE_BOUND_MB,
        "within_bound": queued["total_mb"] <= HOT_TABLE_BOUND_MB,
        "claim_scans": scans,
        "claim_uses_indexes": not any(s.startswith("Seq Scan") for s in scans)
        and any(s.endswith(":jobs_claim_idx") for s in scans),
    }


async def bench_churn(dsn: str, params: Params) -> JsonObject:
    """The churn phase in a freshly recreated database, at the first concurrency."""
    async with fresh_scheduler(dsn, Tracker()) as scheduler:
        conn = await asyncpg.connect(dsn)
        try:
            with progress_bar("churn", params.churn_n, enabled=params.progress) as bar:
                return await churn(
                    scheduler,
                    conn,
                    total=params.churn_n,
                    backlog=params.churn_backlog,
                    concurrency=params.concurrencies[0],
                    on_progress=None if bar is None else lambda n: bar.update(bar.task_ids[0], completed=n),
                )
        finally:
            await conn.close()
