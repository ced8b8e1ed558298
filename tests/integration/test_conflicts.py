"""Deadlocks that PostgreSQL breaks by failing one side: pgqueue's side runs again.

A transaction of the test plays the other side. It locks the job that pgqueue's statement
meets last on disk; pgqueue's statement locks the first one and waits; then the test asks
for the first one, which closes the cycle. Each backend looks for a deadlock once, its
``deadlock_timeout`` after it starts to wait: pgqueue's connections here wait 3 s and the
test's transaction 60 s, so pgqueue's statement is the one PostgreSQL fails, and the test
has 3 s to close the cycle. The test then gets its row, rolls back, and pgqueue's next run
goes through: the caller sees its result, never ``DeadlockDetectedError``.

The last tests inject conflicts that keep coming back into the flusher: its batch is
kept and written whole, never split into run-less writes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import asyncpg
import pytest

from pgqueue import Job, JobState, Outcome, Scheduler
from pgqueue.store import FinalizeResult
from pgqueue.store.postgres import PostgresStore
from pgqueue.store.postgres.errors import CONFLICT_RETRIES, again_on_conflict, is_conflict
from pgqueue.worker.flusher import build_batch
from pgqueue.worker.results import RunResult
from tests._support import (
    WAIT_S,
    Counter,
    StoreWrapper,
    blocked_by,
    claim_records,
    pg_store,
    running,
    runs,
    until,
    wait,
    worker_on,
)

pytestmark = pytest.mark.pg

Q = "cq"
VICTIM_DEADLOCK_TIMEOUT = "3s"  # pgqueue's side: the test closes the cycle well within it


@pytest.fixture
async def victim(scheduler: Scheduler, dsn: str) -> AsyncIterator[Scheduler]:
    """The test's schema, through connections that look for a deadlock after 3 s, not 1 s."""
    sep = "&" if "?" in dsn else "?"
    s = Scheduler(f"{dsn}{sep}deadlock_timeout={VICTIM_DEADLOCK_TIMEOUT}", schema=scheduler.schema)
    async with s:
        yield s


async def noop(job: Job) -> None:
    return None


async def held_jobs(scheduler: Scheduler, db: asyncpg.Connection) -> tuple[PostgresStore, int, list[Job]]:
    """Two jobs of queue ``Q`` claimed by a registered worker, in their order on disk."""
    scheduler.register("t", noop, queue=Q)
    await scheduler.schedule_many("t", [1, 2])
    store = await pg_store(scheduler)
    wid, _ = await store.worker_register([Q])
    claimed = {j.id: j for j in (Job._from_row(r) for r in await claim_records(store, [Q], 10, wid))}
    on_disk = await db.fetch(f'SELECT id FROM "{scheduler.schema}".jobs ORDER BY ctid')
    assert sorted(claimed) == sorted(r["id"] for r in on_disk)
    return store, wid, [claimed[r["id"]] for r in on_disk]


async def pid_of(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT pg_backend_pid()"))


async def cross(dsn: str, db: asyncpg.Connection, schema: str, jobs: list[Job], call: Awaitable[Any]) -> Any:
    """Run ``call`` into a deadlock with a transaction on ``db`` (see the module); its result."""
    first, last = (j.id for j in jobs)
    result: list[Any] = []

    async def side() -> None:
        result.append(await call)

    own = await pid_of(db)
    probe = await asyncpg.connect(dsn)  # opened first: it must not eat the 3 s below
    nowait = f'SELECT 1 FROM "{schema}".jobs WHERE id = $1 FOR UPDATE NOWAIT'
    try:
        with anyio.fail_after(WAIT_S):
            async with anyio.create_task_group() as tg:
                tx = db.transaction()
                await tx.start()
                await db.execute("SET LOCAL deadlock_timeout = '60s'")
                await db.execute(f'SELECT 1 FROM "{schema}".jobs WHERE id = $1 FOR UPDATE', last)
                tg.start_soon(side)
                await blocked_by(db, own)  # pgqueue's statement waits for `last`...
                with pytest.raises(asyncpg.LockNotAvailableError):  # ...holding `first`
                    await probe.execute(nowait, first)
                # The cycle: PostgreSQL fails pgqueue's statement and gives us `first`;
                # pgqueue's next run waits for us.
                await db.execute(f'SELECT 1 FROM "{schema}".jobs WHERE id = $1 FOR UPDATE', first)
                await tx.rollback()
    finally:
        await probe.close()
    return result[0]


async def test_set_queue_limit_runs_again_when_a_deadlock_fails_it(
    scheduler: Scheduler, victim: Scheduler, dsn: str, db: asyncpg.Connection
) -> None:
    """set_queue_limit() marks the jobs workers hold, in the order it meets them."""
    _, _, jobs = await held_jobs(scheduler, db)
    await cross(dsn, db, scheduler.schema, jobs, victim.set_queue_limit(Q, concurrency=1))
    (limit,) = await scheduler.list_queue_limits()
    assert (limit.queue, limit.concurrency) == (Q, 1)


async def test_remove_worker_runs_again_when_a_deadlock_fails_it(
    scheduler: Scheduler, victim: Scheduler, dsn: str, db: asyncpg.Connection
) -> None:
    """remove_worker(force=True) releases the worker's jobs as the reaper does."""
    _, wid, jobs = await held_jobs(scheduler, db)
    released = await cross(dsn, db, scheduler.schema, jobs, victim.remove_worker(wid, force=True))
    assert released == 2
    rows = await runs(db, scheduler.schema)
    assert sorted(r["job_id"] for r in rows) == sorted(j.id for j in jobs)  # one crashed run each, once
    assert {r["outcome"] for r in rows} == {"crashed"}


async def test_a_flush_runs_again_when_a_deadlock_fails_it(
    scheduler: Scheduler, victim: Scheduler, dsn: str, db: asyncpg.Connection
) -> None:
    """The flush statement locks its jobs in the order its plan meets them (here: on disk)."""
    _, wid, jobs = await held_jobs(scheduler, db)
    results = [RunResult(j, Outcome.SUCCEEDED, 1.0, 2.0, None, None, None, 0) for j in jobs]
    call = (await pg_store(victim)).job_finalize_many(wid, build_batch(results, None))
    done: FinalizeResult = await cross(dsn, db, scheduler.schema, jobs, call)
    assert done.ended == frozenset(j.id for j in jobs)
    rows = await runs(db, scheduler.schema)
    assert sorted(r["job_id"] for r in rows) == sorted(j.id for j in jobs)
    assert {r["outcome"] for r in rows} == {"succeeded"}


async def test_a_flush_on_its_held_connection_runs_again_when_a_deadlock_fails_it(
    scheduler: Scheduler, victim: Scheduler, dsn: str, db: asyncpg.Connection
) -> None:
    """As the worker's flusher writes: on the connection it holds. The failed run gives that
    connection back (its transaction was rolled back) and the next run takes one again."""
    _, wid, jobs = await held_jobs(scheduler, db)
    store = await pg_store(victim)
    held = store.hold()
    assert held is not None
    try:
        results = [RunResult(j, Outcome.SUCCEEDED, 1.0, 2.0, None, None, None, 0) for j in jobs]
        call = store.job_finalize_many(wid, build_batch(results, None), held)
        done: FinalizeResult = await cross(dsn, db, scheduler.schema, jobs, call)
        assert done.ended == frozenset(j.id for j in jobs)
        again = await store.job_finalize_many(wid, build_batch(results, None), held)
        assert again.ended == frozenset()  # fenced: written once; the held connection works
    finally:
        await held.release()
    rows = await runs(db, scheduler.schema)
    assert sorted(r["job_id"] for r in rows) == sorted(j.id for j in jobs)


async def test_again_on_conflict_runs_only_a_conflicts_victim_again(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def failing(times: int, exc: Exception) -> Callable[[], Awaitable[str]]:
        async def run() -> str:
            calls.append(1)
            if len(calls) <= times:
                raise exc
            return "done"

        return run

    deadlock = asyncpg.DeadlockDetectedError("deadlock detected")
    with caplog.at_level(logging.WARNING, logger="pgqueue"):
        assert await again_on_conflict("job_cancel", failing(CONFLICT_RETRIES - 1, deadlock)) == "done"
    reruns = [r for r in caplog.records if getattr(r, "event", None) == "conflict_rerun"]
    assert [(r.statement, r.attempt) for r in reruns] == [  # type: ignore[attr-defined]
        ("job_cancel", n) for n in range(1, CONFLICT_RETRIES)
    ]
    assert len(calls) == CONFLICT_RETRIES
    calls.clear()
    assert await again_on_conflict("test", failing(1, asyncpg.SerializationError("x"))) == "done"
    calls.clear()
    with pytest.raises(asyncpg.DeadlockDetectedError):  # the last one propagates
        await again_on_conflict("test", failing(CONFLICT_RETRIES, asyncpg.DeadlockDetectedError("x")))
    assert len(calls) == CONFLICT_RETRIES
    calls.clear()
    with pytest.raises(asyncpg.UniqueViolationError):  # anything else is not run again
        await again_on_conflict("test", failing(1, asyncpg.UniqueViolationError("x")))
    assert len(calls) == 1
    assert is_conflict(asyncpg.DeadlockDetectedError("x"))
    assert not is_conflict(asyncpg.UniqueViolationError("x"))


async def test_a_flush_that_keeps_losing_conflicts_is_kept_whole_and_written_later(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """Conflicts past the store's own reruns: the flusher keeps the batch and retries it
    after its backoff. It never falls back to writing results one at a time, where a result
    that fails again would end its job without its run row."""
    done = Counter(6)
    # The override stands in for the whole store method, its own reruns included: each
    # conflict fails one flush_once(), more of them than the store would ever rerun.
    losses = 2 * CONFLICT_RETRIES
    left = losses
    store = StoreWrapper(await pg_store(scheduler))
    sizes: list[int] = []

    async def losing(worker_id: int, batch: Any, *args: Any, **kwargs: Any) -> FinalizeResult:
        nonlocal left
        sizes.append(len(batch.end_ids))
        if left > 0:
            left -= 1
            raise asyncpg.DeadlockDetectedError("deadlock detected (injected)")
        result: FinalizeResult = await store.inner.job_finalize_many(worker_id, batch, *args, **kwargs)
        return result

    store.override("job_finalize_many", losing)

    @scheduler.job("work", queue=Q)
    async def work(job: Job) -> str:
        done.hit(job.id)
        return f"result {job.id}"

    ids = await scheduler.schedule_many("work", range(6))
    worker = worker_on(scheduler, store, flush_age=3600, flush_max=1000, on_error=lambda e: None)
    async with running(worker):
        await wait(done.done)
        assert worker._stages is not None
        flusher = worker._stages.flusher
        for _ in range(losses):
            assert not await flusher.flush_once()  # lost: the batch is kept
        assert await flusher.flush_once()
    assert sizes == [6] * (losses + 1)  # always the whole batch, never one by one
    rows = await runs(db, scheduler.schema)
    assert sorted(r["job_id"] for r in rows) == sorted(ids)
    assert {r["job_id"]: r["result"] for r in rows} == {i: f'"result {i}"' for i in ids}


async def waits_for(db: asyncpg.Connection, pid: int) -> None:
    """Wait until backend ``pid`` waits for a lock."""

    async def waiting() -> bool:
        return bool(await db.fetchval("SELECT cardinality(pg_blocking_pids($1)) > 0", pid))

    await until(waiting)


async def test_flushes_ending_jobs_of_one_graph_lock_its_waiting_jobs_in_one_order(
    scheduler: Scheduler, dsn: str, db: asyncpg.Connection
) -> None:
    """X waits on A; Y on X and B; Z on A and Y; V on B. Two workers' flushes end A and B as
    final failures at once, straight through the statement (no reruns): each cancels what
    waits below its job, and each locks all of it in one pass in id order, so neither holds
    a row the other wants while it waits for one. B's flush is first held up at V."""
    for name, queue in (("a", "qa"), ("b", "qb"), ("d", "qd")):
        scheduler.register(name, noop, queue=queue)
    a, b = await scheduler.schedule("a"), await scheduler.schedule("b")
    x = await scheduler.schedule("d", depends_on=[a])
    y = await scheduler.schedule("d", depends_on=[x, b])
    z = await scheduler.schedule("d", depends_on=[a, y])
    v = await scheduler.schedule("d", depends_on=[b])
    store = await pg_store(scheduler)
    flushes: dict[str, tuple[asyncpg.Connection, tuple[object, ...]]] = {}
    for queue in ("qa", "qb"):
        wid, _ = await store.worker_register([queue])
        (row,) = await claim_records(store, [queue], 1, wid)
        failed = RunResult(Job._from_row(row), Outcome.FAILED, 1.0, 2.0, "boom", None, None, 1)
        batch = build_batch([failed], None)
        args = (wid, *batch.arguments(), 0.0, store.channel, batch.end_lines, batch.back_lines)
        flushes[queue] = (await asyncpg.connect(dsn), args)
    holder = await asyncpg.connect(dsn)
    pids = {queue: await pid_of(conn) for queue, (conn, _) in flushes.items()}
    ended: list[object] = []

    async def flush(queue: str) -> None:
        conn, args = flushes[queue]
        ended.append(await conn.fetchrow(store.q.job_finalize_many, *args))

    try:
        with anyio.fail_after(WAIT_S):
            async with anyio.create_task_group() as tg:
                tx = holder.transaction()
                await tx.start()
                await holder.execute(f'SELECT 1 FROM "{scheduler.schema}".jobs WHERE id = $1 FOR SHARE', v)
                tg.start_soon(flush, "qb")
                await waits_for(db, pids["qb"])  # B's flush waits at V
                tg.start_soon(flush, "qa")
                await waits_for(db, pids["qa"])  # A's waits for B's
                await tx.commit()
    finally:
        for conn, _ in flushes.values():
            await conn.close()
        await holder.close()
    assert len(ended) == 2  # neither flush was a deadlock's victim
    for job_id in (x, y, z, v):
        assert (await scheduler.get_job(job_id)).state == JobState.CANCELLED
