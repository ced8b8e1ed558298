"""Unique jobs on PostgreSQL: one job per key under concurrent schedulers, a caller's
transaction, the expiry of kept keys. The key's life after the job, on both backends:
tests/contract/test_unique_contract.py."""

from __future__ import annotations

import anyio
import asyncpg
import pytest

from pgqueue import ConfigError, JobNotFound, Scheduler
from tests._support import hot_count, running, until

pytestmark = pytest.mark.pg


async def test_many_concurrent_schedulers_of_one_key_make_one_job(
    dsn: str, scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    others = [Scheduler(dsn, schema=scheduler.schema) for _ in range(4)]
    for s in (scheduler, *others):
        s.register("t", lambda job: None)
    results: list[tuple[int, bool]] = []

    async def schedule(s: Scheduler, i: int) -> None:
        job_id = await s.schedule("t", {"i": i}, unique_key="report:2026-12-01")
        results.append((int(job_id), job_id.inserted))

    try:
        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(schedule, (scheduler, *others)[i % 5], i)
    finally:
        for s in others:
            await s.close()
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(inserted for _, inserted in results) == 1
    assert await hot_count(db, scheduler.schema) == 1
    record = await scheduler.get_job_by_key("report:2026-12-01")
    assert record.id == results[0][0]


async def test_a_unique_job_in_a_rolled_back_transaction_holds_nothing(
    dsn: str, scheduler: Scheduler
) -> None:
    scheduler.register("t", lambda job: None)
    conn = await asyncpg.connect(dsn)
    try:
        tx = conn.transaction()
        await tx.start()
        inside = await scheduler.schedule("t", unique_key="x", conn=conn)
        assert inside.inserted
        await tx.rollback()
    finally:
        await conn.close()
    with pytest.raises(JobNotFound, match="unique key 'x'"):
        await scheduler.get_job_by_key("x")
    assert (await scheduler.schedule("t", unique_key="x")).inserted


def test_bad_unique_options_are_refused_at_registration() -> None:
    with pytest.raises(ConfigError):
        Scheduler("postgresql://unused").register("u", lambda job: None, unique_for=-1)
    for ends in ("failed", ["running"], ["done"], 3):
        with pytest.raises(ConfigError, match="unique_kept_after"):
            Scheduler("postgresql://unused").register("u", lambda job: None, unique_kept_after=ends)  # type: ignore[arg-type]


async def test_unique_key_refuses_a_repeatable_read_transaction(dsn: str, scheduler: Scheduler) -> None:
    scheduler.register("t", lambda job: None)
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read"):
            with pytest.raises(ConfigError, match="read committed"):
                await scheduler.schedule("t", unique_key="rr", conn=conn)
    finally:
        await conn.close()


async def test_expired_kept_keys_are_dropped_by_the_workers(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    scheduler.register("t", lambda job: None)
    await db.execute(
        f'INSERT INTO "{scheduler.schema}".unique_keys (key, job_id, until) '
        "VALUES ('old', 1, now() - interval '1 s')"
    )
    worker = scheduler.worker(poll_interval=60, heartbeat_interval=0.05, dead_after=1)
    async with running(worker):

        async def gone() -> bool:
            return not await db.fetchval(f'SELECT count(*) FROM "{scheduler.schema}".unique_keys')

        await until(gone)
