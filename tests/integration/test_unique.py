"""Unique jobs: one job per key under concurrent schedulers; the key's life after the job."""

from __future__ import annotations

import datetime as dt

import anyio
import asyncpg
import pytest

from pgqueue import Cancel, ConfigError, Job, JobNotFound, JobState, Scheduler
from tests._support import hot_count, running, runs, until

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


async def test_the_key_is_freed_when_the_job_ends_unless_kept(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    scheduler.register("free", lambda job: None)
    scheduler.register("kept", lambda job: None, unique_for=dt.timedelta(hours=1))

    async with running(scheduler.worker(poll_interval=60)):
        free = await scheduler.schedule("free", unique_key="f")
        kept = await scheduler.schedule("kept", unique_key="k")

        async def both_ended() -> bool:
            return len(await runs(db, scheduler.schema)) == 2

        await until(both_ended)
    again_free = await scheduler.schedule("free", unique_key="f")
    assert again_free.inserted
    assert again_free != free
    again_kept = await scheduler.schedule("kept", unique_key="k")
    assert (again_kept, again_kept.inserted) == (kept, False)  # held for an hour after success
    record = await scheduler.get_job_by_key("k")
    assert (record.id, record.state) == (kept, JobState.SUCCEEDED)


async def test_a_failed_or_cancelled_job_frees_its_key(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    @scheduler.job("t", unique_for=3600)
    async def t(job: Job) -> None:
        raise Cancel("not today") if job.params == "cancel" else RuntimeError("no")

    async with running(scheduler.worker(poll_interval=60)):
        failed = await scheduler.schedule("t", "fail", unique_key="a")
        cancelled = await scheduler.schedule("t", "cancel", unique_key="b")

        async def both_ended() -> bool:
            return len(await runs(db, scheduler.schema)) == 2

        await until(both_ended)
    assert (await scheduler.get_job(failed)).state is JobState.FAILED
    assert (await scheduler.get_job(cancelled)).state is JobState.CANCELLED
    assert (await scheduler.schedule("t", unique_key="a")).inserted
    assert (await scheduler.schedule("t", unique_key="b")).inserted
    waiting = await scheduler.schedule("t", unique_key="c", run_at=dt.timedelta(hours=1))
    await scheduler.cancel(waiting)
    assert (await scheduler.schedule("t", unique_key="c")).inserted


async def test_a_type_can_keep_the_key_after_a_failure_or_a_cancel(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    @scheduler.job("t", unique_for=3600, unique_kept_after=["failed", "cancelled"])
    async def t(job: Job) -> None:
        raise Cancel("not today") if job.params == "cancel" else RuntimeError("no")

    @scheduler.job("ok", unique_for=3600, unique_kept_after=["failed"])
    async def ok(job: Job) -> None:
        return None

    async with running(scheduler.worker(poll_interval=60)):
        failed = await scheduler.schedule("t", "fail", unique_key="a")
        cancelled = await scheduler.schedule("t", "cancel", unique_key="b")
        succeeded = await scheduler.schedule("ok", unique_key="d")

        async def all_ended() -> bool:
            return len(await runs(db, scheduler.schema)) == 3

        await until(all_ended)
    again = await scheduler.schedule("t", unique_key="a")
    assert (again, again.inserted) == (failed, False)
    again = await scheduler.schedule("t", unique_key="b")
    assert (again, again.inserted) == (cancelled, False)
    assert (await scheduler.get_job_by_key("a")).state is JobState.FAILED
    # "ok" keeps its key after a failure only: its success frees it.
    fresh = await scheduler.schedule("ok", unique_key="d")
    assert fresh.inserted
    assert fresh != succeeded
    # A cancel that reaches a job before any worker keeps the key too.
    waiting = await scheduler.schedule("t", unique_key="c", run_at=dt.timedelta(hours=1))
    await scheduler.cancel(waiting)
    again = await scheduler.schedule("t", unique_key="c")
    assert (again, again.inserted) == (waiting, False)
    info = {i.name: i for i in scheduler.job_types()}["t"]
    assert (info.unique_for, info.unique_kept_after) == (3600.0, ("failed", "cancelled"))


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


async def test_plain_schedules_say_inserted_and_bad_keys_are_refused(scheduler: Scheduler) -> None:
    scheduler.register("t", lambda job: None)
    job_id = await scheduler.schedule("t")
    assert job_id.inserted
    assert isinstance(job_id, int)
    with pytest.raises(ConfigError):
        await scheduler.schedule("t", unique_key="")
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
