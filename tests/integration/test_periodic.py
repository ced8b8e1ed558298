"""Periodic jobs on PostgreSQL: the compare-and-set under concurrency, overlap against a
concurrent fire, notifications, and a schema without the table."""

from __future__ import annotations

import datetime as dt

import anyio
import asyncpg
import pytest

from pgqueue import Job, Scheduler, SchemaNotMigratedError
from pgqueue.periodic.enqueuer import PeriodicEnqueuer
from pgqueue.periodic.ticks import EveryTicks
from pgqueue.store.periodic_rows import PeriodicFire
from tests._support import WAIT_S, lock_wait, pg_store, until

pytestmark = pytest.mark.pg

MINUTE = dt.timedelta(minutes=1)


def past_tick() -> dt.datetime:
    tick = EveryTicks(60).latest(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert tick is not None
    return tick


async def noop(job: Job) -> None:
    return None


def declare(s: Scheduler, **options: object) -> None:
    s.register("tick", noop, queue="cron")
    s.add_periodic("minutely", every=60, job="tick", **options)  # type: ignore[arg-type]


async def periodic_jobs(db: asyncpg.Connection, schema: str) -> list[dt.datetime]:
    rows = await db.fetch(f'SELECT run_at FROM "{schema}".jobs WHERE type = $1 ORDER BY run_at', "tick")
    return [r[0] for r in rows]


async def test_concurrent_rounds_of_many_schedulers_enqueue_each_tick_once(
    scheduler: Scheduler, dsn: str, schema_name: str, db: asyncpg.Connection
) -> None:
    """Eight schedulers with their own pools offer the same ticks at the same moment."""
    peers = [Scheduler(dsn, schema=schema_name) for _ in range(8)]
    for s in peers:
        declare(s)
    t = past_tick()
    try:
        for step in range(10):
            now = t + step * MINUTE + dt.timedelta(seconds=1)
            results: list[int] = []

            async def round_of(s: Scheduler, at: dt.datetime, out: list[int]) -> None:
                out.append(await s.enqueue_due_periodic(at))

            with anyio.fail_after(WAIT_S):
                async with anyio.create_task_group() as tg:
                    for s in peers:
                        tg.start_soon(round_of, s, now, results)
            assert sorted(results) == [0] * 7 + [1], step
    finally:
        for s in peers:
            await s.close()
    assert await periodic_jobs(db, schema_name) == [t + i * MINUTE for i in range(10)]


async def test_no_overlap_sees_the_job_a_concurrent_fire_committed_while_it_waited(
    scheduler: Scheduler, db: asyncpg.Connection, schema_name: str
) -> None:
    """Process A fires tick t+1 in a transaction that holds the row; process B offers t+2
    meanwhile and waits for the row. When A commits, B must see A's job as live (a fresh
    look at jobs, not its statement's older snapshot) and skip, not enqueue a second job."""
    declare(scheduler, overlap=False)
    t = past_tick()
    assert await scheduler.enqueue_due_periodic(t) == 1
    (first,) = [p.last_job_id for p in await scheduler.list_periodic(t)]
    assert first is not None
    await scheduler.delete(first)  # the previous job is gone: the next tick may fire
    store = await pg_store(scheduler)
    enqueuer = PeriodicEnqueuer(store, scheduler.registry)
    (ready,) = [PeriodicEnqueuer._fire(r, t + MINUTE, r.spec.window(t + MINUTE)) for r in enqueuer._ready]
    assert isinstance(ready, PeriodicFire)
    results: list[int] = []

    async def process_b() -> None:
        results.append(await scheduler.enqueue_due_periodic(t + 2 * MINUTE))

    with anyio.fail_after(WAIT_S):
        async with anyio.create_task_group() as tg:
            tx = db.transaction()
            await tx.start()
            fired = await db.fetch(store.q.periodic_fire_many, *store.fire_args([ready]))
            assert [(r["tick"], r["note"]) for r in fired] == [(t + MINUTE, None)]
            tg.start_soon(process_b)
            await lock_wait(db)  # B's statement waits for our row lock
            await tx.commit()  # B resumes on the row as we left it
    assert results == [0]
    (listed,) = await scheduler.list_periodic(t + 2 * MINUTE)
    assert (listed.last_tick, listed.last_job_id, listed.last_outcome) == (
        t + 2 * MINUTE,
        fired[0]["job_id"],
        "skipped (overlap)",
    )
    assert await periodic_jobs(db, schema_name) == [t + MINUTE]


async def test_a_round_locks_its_rows_in_name_order_whatever_their_place_on_disk(
    scheduler: Scheduler, db: asyncpg.Connection, schema_name: str
) -> None:
    """Rounds of several processes, and a process's first declaration, lock the same rows
    at once: each must take them in one order (by name), or two of them deadlock. The rows
    are placed on disk against name order (an update moves a row to the end of its page);
    while row "a" is held elsewhere, a round waits for it before it locks "b" and "c"."""
    for name in ("a", "b", "c"):
        scheduler.register(name, noop, queue="cron")
        scheduler.add_periodic(name, every=60, job=name)
    t = past_tick()
    assert await scheduler.enqueue_due_periodic(t) == 3
    await db.execute(f'UPDATE "{schema_name}".periodic SET updated_at = now() WHERE name = $1', "a")
    on_disk = await db.fetch(f'SELECT name FROM "{schema_name}".periodic ORDER BY ctid')
    assert [r["name"] for r in on_disk] == ["b", "c", "a"]
    results: list[int] = []

    async def round_at(at: dt.datetime) -> None:
        results.append(await scheduler.enqueue_due_periodic(at))

    free: list[str] = []
    with anyio.fail_after(WAIT_S):
        async with anyio.create_task_group() as tg:
            tx = db.transaction()
            await tx.start()
            await db.execute(f'SELECT 1 FROM "{schema_name}".periodic WHERE name = $1 FOR UPDATE', "a")
            tg.start_soon(round_at, t + MINUTE)
            await lock_wait(db)  # the round waits for "a"
            async with (await pg_store(scheduler)).pool.acquire() as other:
                rows = await other.fetch(
                    f'SELECT name FROM "{schema_name}".periodic ORDER BY name FOR UPDATE SKIP LOCKED'
                )
                free = [r["name"] for r in rows]
            await tx.commit()
    assert free == ["b", "c"]  # nothing after "a" was locked while the round waited for it
    assert results == [3]


async def test_a_fired_tick_tells_its_queue_as_schedule_does(
    scheduler: Scheduler, dsn: str, schema_name: str
) -> None:
    """A past tick wakes the queue ('r:'); a tick offered early by a clock ahead of the
    database's arrives as a delayed job ('d:' with the seconds until its tick)."""
    declare(scheduler)
    payloads: list[str] = []
    listener = await asyncpg.connect(dsn)
    try:
        await listener.add_listener(f"{schema_name}_events", lambda *args: payloads.append(args[3]))
        t = past_tick()
        assert await scheduler.enqueue_due_periodic(t) == 1
        await until(lambda: payloads == ["r:cron"])
        ahead = EveryTicks(60).following(dt.datetime.now(dt.UTC) + MINUTE)  # a tick 1-2 min away
        assert ahead is not None
        assert await scheduler.enqueue_due_periodic(ahead + dt.timedelta(seconds=1)) == 1
        await until(lambda: len(payloads) == 2)
        kind, seconds, queue = payloads[1].split(":")
        assert (kind, queue) == ("d", "cron")
        assert 0 < float(seconds) <= 180
        (job,) = [j for j in (await scheduler.list_jobs()).items if j.run_at == ahead]
        assert job.state == "scheduled"
    finally:
        await listener.close()


async def test_a_schema_without_the_periodic_table_is_not_migrated(
    scheduler: Scheduler, db: asyncpg.Connection, schema_name: str
) -> None:
    declare(scheduler)
    await db.execute(f'DROP TABLE "{schema_name}".periodic')
    with pytest.raises(SchemaNotMigratedError, match="enqueue_due_periodic"):
        await scheduler.enqueue_due_periodic(past_tick())
    with pytest.raises(SchemaNotMigratedError, match="list_periodic"):
        await scheduler.list_periodic()
    assert await db.fetchval(f'SELECT count(*) FROM "{schema_name}".jobs') == 0


async def test_the_declaration_rows_are_written_once_and_updated_only_when_changed(
    scheduler: Scheduler, db: asyncpg.Connection, schema_name: str
) -> None:
    declare(scheduler)
    t = past_tick()
    await scheduler.enqueue_due_periodic(t)
    table = f'"{schema_name}".periodic'
    before = await db.fetchrow(f"SELECT xmin::text AS x, updated_at FROM {table}")
    store = await pg_store(scheduler)
    enqueuer = PeriodicEnqueuer(store, scheduler.registry)
    await enqueuer.run_once(t + dt.timedelta(seconds=2))  # declares again (a new enqueuer): no change
    after = await db.fetchrow(f"SELECT xmin::text AS x, updated_at FROM {table}")
    assert before is not None
    assert after is not None
    assert tuple(after) == tuple(before)


async def test_a_row_whose_schedule_this_pgqueue_cannot_read_is_listed_without_a_next_time(
    scheduler: Scheduler, db: asyncpg.Connection, schema_name: str
) -> None:
    await db.execute(
        f'INSERT INTO "{schema_name}".periodic (name, schedule, type, queue) VALUES ($1, $2, $3, $4)',
        "from_the_future",
        "every fortnight, roughly",
        "t",
        "q",
    )
    (listed,) = await scheduler.list_periodic()
    assert (listed.name, listed.schedule, listed.next_fire_at, listed.declared) == (
        "from_the_future",
        "every fortnight, roughly",
        None,
        False,
    )
