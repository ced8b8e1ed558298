"""depends_on on PostgreSQL: the edge rows a refused call leaves (none), dependents scheduled
while their dependencies end, a schema name that needs quoting. Waiting, release on success
and transitive cancel, on both backends: tests/contract/test_dependencies_contract.py."""

from __future__ import annotations

import anyio
import asyncpg
import pytest

from pgqueue import (
    ConfigError,
    InvalidStateError,
    Job,
    JobNotFound,
    JobState,
    Scheduler,
)
from tests._support import (
    WAIT_S,
    Counter,
    blocked_by,
    drop_schema,
    hot_count,
    lock_wait,
    running,
    until,
    wait,
)

pytestmark = pytest.mark.pg


async def _state(scheduler: Scheduler, job_id: int) -> JobState:
    return (await scheduler.get_job(job_id)).state


async def _ended(scheduler: Scheduler, *ids: int) -> None:
    async def all_ended() -> bool:
        return all([(await _state(scheduler, i)).finished for i in ids])

    await until(all_ended)


async def test_bad_dependencies_are_refused_and_write_nothing(
    scheduler: Scheduler, db: asyncpg.Connection, schema_name: str
) -> None:
    @scheduler.job("t")
    async def t(job: Job) -> None:
        raise RuntimeError("no")

    live = await scheduler.schedule("t", None, run_at=None)
    await scheduler.suspend(live)
    failed = await scheduler.schedule("t", None)
    cancelled = await scheduler.schedule("t", None)
    await scheduler.cancel(cancelled)
    async with running(scheduler.worker(poll_interval=3600)):
        await _ended(scheduler, failed)
    before = await hot_count(db, schema_name)

    with pytest.raises(JobNotFound, match=r"dependency 999999 not found"):
        await scheduler.schedule("t", None, depends_on=[live, 999999])
    with pytest.raises(InvalidStateError, match=rf"cannot depend on job {failed}: job {failed} is failed"):
        await scheduler.schedule("t", None, depends_on=[live, failed])
    with pytest.raises(InvalidStateError, match=rf"job {cancelled} is cancelled") as info:
        await scheduler.schedule("t", None, depends_on=[cancelled])
    assert (info.value.job_id, info.value.state) == (cancelled, "cancelled")
    for bad in ("12", [True], [0], [-3], [1.5], 7):
        with pytest.raises(ConfigError, match="depends_on"):
            await scheduler.schedule("t", None, depends_on=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="at most 1000"):
        await scheduler.schedule("t", None, depends_on=range(1, 1002))
    with pytest.raises(ConfigError, match="cannot be combined"):
        await scheduler.schedule("t", None, depends_on=[live], unique_key="k")

    assert await hot_count(db, schema_name) == before
    assert await db.fetchval(f'SELECT count(*) FROM "{schema_name}".job_dependencies') == 0
    # The refused calls marked no dependency: a plain job's end must stay the plain path.
    assert not await db.fetchval(f'SELECT has_dependents FROM "{schema_name}".jobs WHERE id = $1', live)


async def test_dependents_scheduled_while_their_dependencies_finish_are_never_stuck(
    scheduler: Scheduler,
) -> None:
    """Each dependent is scheduled right after its dependency, while workers finish those:
    whichever side commits first, the dependent must be released (or see the end)."""
    n = 60
    done = Counter(2 * n)

    @scheduler.job("t")
    async def t(job: Job) -> None:
        done.hit(job.id)

    async with running(scheduler.worker(concurrency=8, poll_interval=3600, flush_age=0.001)):
        dependents = []
        for _ in range(n):
            a = await scheduler.schedule("t", None)
            dependents.append(await scheduler.schedule("t", None, depends_on=[a]))
        await wait(done.done)
        await _ended(scheduler, *dependents)
    assert {await _state(scheduler, d) for d in dependents} == {JobState.SUCCEEDED}


async def test_dependencies_work_in_a_schema_whose_name_needs_quoting(dsn: str, schema_name: str) -> None:
    """settle_dependents runs with the search_path of its migration: the quoted schema."""
    odd = f'{schema_name} "Odd"'
    scheduler = Scheduler(dsn, schema=odd)
    await scheduler.migrate()
    try:

        @scheduler.job("t")
        async def t(job: Job) -> None:
            if job.params == "fail":
                raise RuntimeError("no")

        a = await scheduler.schedule("t", "ok")
        b = await scheduler.schedule("t", None, depends_on=[a])
        f = await scheduler.schedule("t", "fail")
        g = await scheduler.schedule("t", None, depends_on=[f])
        async with running(scheduler.worker(poll_interval=3600)):
            await _ended(scheduler, a, b, f, g)
        states = [await _state(scheduler, i) for i in (a, b, f, g)]
        assert states == [JobState.SUCCEEDED, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED]
    finally:
        await scheduler.close()
        await drop_schema(dsn, odd)


async def test_a_dependent_scheduled_while_its_chain_is_being_cancelled_is_cancelled_too(
    scheduler: Scheduler, db: asyncpg.Connection, dsn: str
) -> None:
    """d ← x ← z, and y on z scheduled in an open transaction: cancel(d) waits for z's row,
    which y's transaction holds; once that commits, y must not be left waiting on a job that
    is gone. It is cancelled as any job of the chain, its note naming the chain's cause."""
    scheduler.register("t", lambda job: None)
    d = await scheduler.schedule("t", None, run_at=None)
    await scheduler.suspend(d)
    x = await scheduler.schedule("t", None, depends_on=[d])
    z = await scheduler.schedule("t", None, depends_on=[x])
    conn = await asyncpg.connect(dsn)
    try:
        tx = conn.transaction()
        await tx.start()
        y = await scheduler.schedule("t", None, depends_on=[z], conn=conn)
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.cancel, d)

            await lock_wait(db)
            await tx.commit()
    finally:
        await conn.close()
    states = [await _state(scheduler, i) for i in (d, x, z, y)]
    assert states == [JobState.CANCELLED] * 4
    note = f"dependency {z} was cancelled (dependency {d} was cancelled)"
    assert (await scheduler.get_job(y)).runs[-1].error == note


async def test_a_dependent_scheduled_on_a_newcomer_while_cancel_waits_is_cancelled_too(
    scheduler: Scheduler, db: asyncpg.Connection, dsn: str
) -> None:
    """d ← x ← z and x ← w; y on z and then y2 on y are scheduled in transactions that
    commit while cancel(d) waits for their rows. y, unseen by cancel's first look at the
    chain, is found by its walk; y2, committed while cancel waits for y's row, is cancelled
    by the settling of what cancel ended. Nothing is left waiting on a job that is gone."""
    scheduler.register("t", lambda job: None)
    d = await scheduler.schedule("t", None)
    await scheduler.suspend(d)
    x = await scheduler.schedule("t", None, depends_on=[d])
    z = await scheduler.schedule("t", None, depends_on=[x])
    w = await scheduler.schedule("t", None, depends_on=[x])
    table = f'"{scheduler.schema}".jobs'
    conns = [await asyncpg.connect(dsn) for _ in range(3)]
    holder, first, second = conns
    pids = [await c.fetchval("SELECT pg_backend_pid()") for c in conns]

    try:
        with anyio.fail_after(WAIT_S):
            hold, tx1, tx2 = holder.transaction(), first.transaction(), second.transaction()
            await hold.start()
            await holder.execute(f"SELECT 1 FROM {table} WHERE id = $1 FOR SHARE", w)
            await tx1.start()
            y = await scheduler.schedule("t", None, depends_on=[z], conn=first)  # holds z
            async with anyio.create_task_group() as tg:
                tg.start_soon(scheduler.cancel, d)
                await blocked_by(db, pids[1])  # cancel's first pass waits for z
                await tx1.commit()
                await blocked_by(db, pids[0])  # ... then for w
                await tx2.start()
                y2 = await scheduler.schedule("t", None, depends_on=[y], conn=second)  # holds y
                await hold.commit()
                await blocked_by(db, pids[2])  # cancel's walk found y and waits for it
                await tx2.commit()
    finally:
        for c in conns:
            await c.close()
    states = [await _state(scheduler, i) for i in (d, x, z, w, y, y2)]
    assert states == [JobState.CANCELLED] * 6
    assert (await scheduler.get_job(y2)).runs[-1].error == f"dependency {y} was cancelled"


async def test_schedule_with_dependencies_runs_again_when_postgresql_breaks_a_deadlock_with_it(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """Another transaction holds dependency b and then asks for a, which schedule() (locking
    in id order) holds while it waits for b: PostgreSQL fails schedule()'s transaction,
    which runs again once the other has committed."""
    scheduler.register("t", lambda job: None)
    a, b = await scheduler.schedule_many("t", [1, 2])
    table = f'"{scheduler.schema}".jobs'
    tx = db.transaction()
    await tx.start()
    await db.execute(f"SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE", b)
    made: list[int] = []
    async with anyio.create_task_group() as tg:

        async def schedule_dependent() -> None:
            made.append(await scheduler.schedule("t", None, depends_on=[a, b]))

        tg.start_soon(schedule_dependent)

        await lock_wait(db)
        # This session checks for deadlocks long after schedule()'s backend does (1 s), so
        # PostgreSQL fails schedule()'s transaction however loaded the machine is.
        await db.execute("SET LOCAL deadlock_timeout = '60s'")
        try:
            await db.execute(f"SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE", a)
        finally:
            await tx.commit()
    [dependent] = made
    record = await scheduler.get_job(dependent)
    assert (record.state, record.depends_on) == (JobState.WAITING, (a, b))
