"""Behaviours of the contract that only the PostgreSQL backend honours (see pgqueue/store/memory)."""

from __future__ import annotations

import asyncpg
import pytest

from pgqueue import Job, JobNotFound, JobState, Scheduler
from tests._support import claim_records, pg_store
from tests.contract._helpers import run_until_ended


async def test_a_job_scheduled_in_a_rolled_back_transaction_does_not_exist(
    pg_only_scheduler: Scheduler, dsn: str
) -> None:
    """Memory has no transactions: it stores the job at once and ignores ``conn=``."""
    s = pg_only_scheduler
    s.register("t", lambda job: None)
    conn = await asyncpg.connect(dsn)
    try:
        tx = conn.transaction()
        await tx.start()
        job_id = await s.schedule("t", None, conn=conn)
        await tx.rollback()
    finally:
        await conn.close()
    with pytest.raises(JobNotFound):
        await s.get_job(job_id)


async def test_the_jobs_of_a_worker_that_died_run_again_elsewhere(
    pg_only_scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """Memory's workers share its process, so none dies without handing its jobs back."""
    s = pg_only_scheduler
    ran: list[int] = []

    @s.job("t")
    async def t(job: Job) -> None:
        ran.append(job.attempt)

    job_id = await s.schedule("t", None)
    store = await pg_store(s)
    dead, _ = await store.worker_register(["default"])
    assert len(await claim_records(store, ["default"], 1, dead)) == 1  # claimed, then silence
    table = f'"{s.schema}".workers'
    await db.execute(f"UPDATE {table} SET heartbeat = now() - interval '1 hour' WHERE id = $1", dead)
    [record] = await run_until_ended(s, job_id, heartbeat_interval=0.05, dead_after=1.0)
    assert record.state is JobState.SUCCEEDED
    assert ran == [2]  # the dead worker's claim counted as attempt 1
    assert [r.outcome.value for r in record.runs] == ["crashed", "succeeded"]
