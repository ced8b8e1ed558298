"""Every named query, through the store, on a real server (the contract the stages rely on)."""

from __future__ import annotations

import datetime as dt

import anyio
import asyncpg
import pytest

from pgqueue import Scheduler
from pgqueue._sql import QUERIES
from pgqueue._store import FlushBatch
from tests._support import until

pytestmark = pytest.mark.pg


async def test_every_store_method_against_the_database(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    schema = scheduler.schema
    store = await scheduler.open()
    assert await store.schema_version() == 1

    wid = await store.worker_register(["q"])
    assert await store.worker_heartbeat(wid) is True

    a = await store.job_insert(None, queue="q", type_="t", params='{"a":1}', run_at=None, priority=0)
    b, c = await store.job_insert_many(None, queue="q", type_="t", params=["1", "2"], run_at=None, priority=0)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    d = await store.job_insert(None, queue="q", type_="t", params="null", run_at=later, priority=0)
    due_in = await store.job_next_due(["q"])  # seconds, by the server's clock
    assert due_in is not None
    assert 3590 < due_in <= 3600
    assert await store.job_next_due(["elsewhere"]) is None
    soon = await store.job_insert(
        None, queue="q2", type_="t", params="null", run_at=None, priority=0, delay_s=30
    )
    server_due = await db.fetchval(f'SELECT run_at - now() FROM "{schema}".jobs WHERE id = $1', soon)
    assert dt.timedelta(seconds=29) < server_due <= dt.timedelta(seconds=30)  # the server's clock decides

    rows = await store.job_claim_many(["q"], 10, wid)
    assert [r["id"] for r in rows] == [a, b, c]  # the delayed job is not due
    assert {r["attempt"] for r in rows} == {1}

    # Release c unstarted: its attempt is not counted.
    assert await store.job_release_many(wid, [c]) == 1
    assert await db.fetchval(f'SELECT attempt FROM "{schema}".jobs WHERE id = $1', c) == 0

    batch = FlushBatch(ended_ids=[a], ended_attempts=[1], back_ids=[b], back_attempts=[1])
    batch.back_at, batch.back_delay, batch.back_error_inc, batch.back_error = [None], [30.0], [1], ["boom"]
    now = dt.datetime.now(dt.UTC)
    for jid in (a, b):
        batch.runs.append([jid, wid, now, now, now, now, None, 1, 0, "q", "t", "succeeded", None, "{}", None])
    res = await store.job_finalize_many(wid, batch)
    assert res.ended == {a}
    assert set(res.put_back) == {b}
    assert res.runs_logged == 2
    row = await db.fetchrow(
        f'SELECT worker_id, errors, last_error, delayed, run_at FROM "{schema}".jobs WHERE id = $1', b
    )
    assert (row["worker_id"], row["errors"], row["last_error"], row["delayed"]) == (None, 1, "boom", True)
    logged = await db.fetchval(f'SELECT retry_at FROM "{schema}".job_runs WHERE job_id = $1', b)
    assert logged == row["run_at"] == res.put_back[b]

    # The same flush again (a lost acknowledgement): fenced, nothing changes, nothing logged.
    again = await store.job_finalize_many(wid, batch)
    assert (again.ended, again.put_back, again.runs_logged) == (frozenset(), {}, 0)
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".job_runs') == 2

    # Claim c again, then deregister: everything held is released, the row is gone.
    [again_c] = await store.job_claim_many(["q"], 10, wid)
    assert again_c["id"] == c
    assert await store.worker_deregister(wid) == 1
    assert await db.fetchval(f'SELECT worker_id FROM "{schema}".jobs WHERE id = $1', c) is None
    assert await store.worker_heartbeat(wid) is False
    # A worker whose row is gone claims nothing.
    assert await store.job_claim_many(["q"], 10, wid) == []
    assert d  # still scheduled

    # LISTEN connection and the self-probe.
    conn = await store.listen_connect()
    got = anyio.Event()
    await conn.add_listener(store.channel, lambda *_: got.set())
    await store.listen_probe(conn, "p:x")
    with anyio.fail_after(10):
        await got.wait()
    await store.listen_close(conn)


def test_every_query_has_a_store_method() -> None:
    import inspect

    from pgqueue import _store

    source = inspect.getsource(_store)
    unused = [n for n in QUERIES.names() if f"q.{n}" not in source]
    assert unused == []


async def test_a_stale_attempt_in_a_batch_falls_back_to_the_exact_fence(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """Job j is held at attempt 2 but the batch says attempt 1 (a stale replay); job k really
    is at attempt 2. The fast fence (attempt among {1, 2}) would end j: the store must see the
    mismatch, roll back, and end only k."""
    schema = scheduler.schema
    store = await scheduler.open()
    wid = await store.worker_register(["q"])
    j, k = await store.job_insert_many(None, queue="q", type_="t", params=["1", "2"], run_at=None, priority=0)
    await db.execute(
        f'UPDATE "{schema}".jobs SET worker_id = $1, attempt = 2 WHERE id = ANY($2::bigint[])', wid, [j, k]
    )
    now = dt.datetime.now(dt.UTC)
    batch = FlushBatch(ended_ids=[j, k], ended_attempts=[1, 2])
    for jid, attempt in ((j, 1), (k, 2)):
        batch.runs.append(
            [jid, wid, now, now, now, now, None, attempt, 0, "q", "t", "succeeded", None, "{}", None]
        )
    res = await store.job_finalize_many(wid, batch)
    assert res.ended == {k}
    assert res.runs_logged == 1
    assert await db.fetchval(f'SELECT worker_id FROM "{schema}".jobs WHERE id = $1', j) == wid  # untouched
    assert [r[0] for r in await db.fetch(f'SELECT job_id FROM "{schema}".job_runs')] == [k]


async def test_vacuum_runs_only_past_the_threshold_and_one_at_a_time(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    schema = scheduler.schema
    table = f"'\"{schema}\".jobs'::regclass"
    store = await scheduler.open()
    await db.execute(
        f"INSERT INTO \"{schema}\".jobs (queue, type) SELECT 'q', 't' FROM generate_series(1, 3000)"
    )
    await db.execute(f'DELETE FROM "{schema}".jobs')
    await db.execute("SELECT pg_stat_force_next_flush()")  # PostgreSQL 15+: publish the counts now

    async def counted() -> bool:
        return bool(
            await db.fetchval(f"SELECT n_dead_tup >= 3000 FROM pg_stat_user_tables WHERE relid = {table}")
        )

    await until(counted)
    assert await store.jobs_vacuum_if_needed(10_000) is None  # below the threshold
    key = f"pgqueue.vacuum:{schema}"
    await db.fetchval("SELECT pg_advisory_lock(hashtextextended($1, 0))", key)
    assert await store.jobs_vacuum_if_needed(100) is None  # another worker is vacuuming
    await db.fetchval("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
    assert await store.jobs_vacuum_if_needed(100) == 3000
    assert await db.fetchval(f"SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = {table}") >= 1


async def test_a_cancelled_vacuum_still_releases_its_lock(
    scheduler: Scheduler, db: asyncpg.Connection, dsn: str
) -> None:
    schema = scheduler.schema
    store = await scheduler.open()
    await db.execute(
        f"INSERT INTO \"{schema}\".jobs (queue, type) SELECT 'q', 't' FROM generate_series(1, 300)"
    )
    await db.execute(f'DELETE FROM "{schema}".jobs')
    await db.execute("SELECT pg_stat_force_next_flush()")
    blocker = await asyncpg.connect(dsn)
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute(f'LOCK TABLE "{schema}".jobs IN SHARE UPDATE EXCLUSIVE MODE')  # VACUUM waits
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.jobs_vacuum_if_needed, 1)
            key = f"pgqueue.vacuum:{schema}"

            async def vacuum_waiting() -> bool:
                return bool(
                    await db.fetchval("SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE 'VACUUM%'")
                )

            await until(vacuum_waiting)
            tg.cancel_scope.cancel()
        await tx.rollback()
        assert await db.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key)
        await db.fetchval("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
    finally:
        await blocker.close()
