"""Tenants on PostgreSQL: every run row carries the job's tenant (flushes, reaping), both
claims return it at ROW_TENANT, a limit keyed by TENANT marks held jobs under their tenant,
and jobs without a tenant write NULL."""

from __future__ import annotations

import asyncpg
import pytest

from pgqueue import TENANT, ErrorWithRetry, Job, Scheduler
from pgqueue._models import ROW_TENANT
from tests._support import claim_records, pg_store, runs
from tests.contract._helpers import run_until_ended

pytestmark = pytest.mark.pg


async def test_every_run_row_of_a_job_carries_its_tenant(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """A put-back run and the final one, logged by the flush, both carry the tenant."""

    @scheduler.job("again")
    async def again(job: Job) -> None:
        if job.attempt == 1:
            raise ErrorWithRetry(RuntimeError("once more"), 0)

    tenanted = await scheduler.schedule("again", tenant="acme")
    plain = await scheduler.schedule("again")
    await run_until_ended(scheduler, tenanted, plain)
    rows = await runs(db, scheduler.schema)
    assert [(r["job_id"], r["attempt"], r["retry_at"] is None, r["tenant"]) for r in rows] == [
        (tenanted, 1, False, "acme"),
        (tenanted, 2, True, "acme"),
        (plain, 1, False, None),
        (plain, 2, True, None),
    ]


async def test_a_reaped_run_carries_the_tenant(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    scheduler.register("t", lambda job: None)
    job_id = await scheduler.schedule("t", tenant="acme")
    store = await pg_store(scheduler)
    wid, _ = await store.worker_register(["default"])
    [claimed] = await claim_records(store, ["default"], 1, wid)
    assert claimed["tenant"] == claimed[ROW_TENANT] == "acme"
    await db.execute(
        f"UPDATE \"{scheduler.schema}\".workers SET heartbeat = now() - interval '1 hour' WHERE id = $1", wid
    )
    assert await store.worker_reap(0.1, 0) == (1, 1)
    [run] = await runs(db, scheduler.schema, job_id)
    assert (run["outcome"], run["tenant"]) == ("crashed", "acme")


async def test_the_limited_claim_returns_the_tenant_and_marks_its_key(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    scheduler.register("t", lambda job: None, queue="q")
    await scheduler.schedule("t", {"c": "params-key"}, tenant="acme")
    await scheduler.schedule("t", {"c": "params-key"})
    await scheduler.set_queue_limit("q", per_key=1, key=TENANT)
    store = await pg_store(scheduler)
    wid, _ = await store.worker_register(["q"])
    claim = await store.job_claim_limited("q", 10, wid, [])
    assert sorted((row[ROW_TENANT] or "") for row in claim.rows) == ["", "acme"]
    assert claim.capped is False
    keys = await db.fetch(f'SELECT tenant, limit_key, slot FROM "{scheduler.schema}".jobs ORDER BY id')
    assert [tuple(k) for k in keys] == [("acme", "acme", True), (None, None, True)]


async def test_setting_or_adopting_a_tenant_limit_keys_held_jobs_by_tenant(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """Jobs claimed plainly before the limit existed count under their tenant once it is set
    (queue_limit_set) or once their worker adopts them (queue_limit_adopt)."""
    scheduler.register("t", lambda job: None, queue="q")
    await scheduler.schedule_many("t", [{"c": 1}, {"c": 2}], tenant=["acme", "globex"])
    store = await pg_store(scheduler)
    wid, _ = await store.worker_register(["q"])
    assert len(await store.job_claim_many(["q"], 1, wid)) == 1
    await scheduler.set_queue_limit("q", per_key=1, key=TENANT)
    held = f'SELECT tenant, limit_key FROM "{scheduler.schema}".jobs WHERE slot ORDER BY id'
    assert [tuple(r) for r in await db.fetch(held)] == [("acme", "acme")]
    await db.execute(f'UPDATE "{scheduler.schema}".jobs SET slot = false, limit_key = NULL')
    assert len(await store.job_claim_many(["q"], 1, wid)) == 1
    assert await store.queue_limit_adopt(["q"], wid) == 2
    assert [tuple(r) for r in await db.fetch(held)] == [("acme", "acme"), ("globex", "globex")]


async def test_jobs_without_a_tenant_store_null(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    scheduler.register("t", lambda job: None)
    await scheduler.schedule("t")
    await scheduler.schedule_many("t", [1, 2])
    await scheduler.schedule("t", unique_key="k")
    assert await db.fetchval(f'SELECT count(*) FROM "{scheduler.schema}".jobs WHERE tenant IS NULL') == 4
