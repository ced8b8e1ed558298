"""Churn keeps the hot table small and its claim on the indexes (the bounded CI version).

`make bench` runs the same workload with 1,000,000 jobs (phase ``churn``); here 50,000 go
through with 10,000 kept queued, and the README's bound applies to both.
"""

from __future__ import annotations

import asyncpg
import pytest

from pgqueue import Job, Scheduler
from pgqueue.bench._churn import HOT_TABLE_BOUND_MB, churn

pytestmark = pytest.mark.pg


async def test_fifty_thousand_jobs_leave_the_hot_table_small_and_the_claim_on_its_indexes(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    @scheduler.job("noop")
    async def noop(job: Job) -> None:
        pass

    out = await churn(scheduler, db, total=50_000, backlog=10_000, concurrency=50)
    queued = out["queued"]
    assert isinstance(queued, dict)
    assert queued["total_mb"] <= HOT_TABLE_BOUND_MB, out
    scans = out["claim_scans"]
    assert isinstance(scans, list)
    assert not [s for s in scans if str(s).startswith("Seq Scan")], scans
    assert {"Index Scan:jobs_claim_idx", "Index Scan:jobs_due_idx"} <= set(scans), scans
    assert out["claim_uses_indexes"] is True
    runs = await db.fetchval(f'SELECT count(*) FROM "{scheduler.schema}".job_runs')
    assert runs == 50_000  # every job went through once
