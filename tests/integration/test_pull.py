"""Pull mode on PostgreSQL alone: columns, the database's clock, sweeps, reaping and closing.

The behaviour both backends share (dequeue, claim, dequeue_by_id, fencing, expiry, fail,
requeue, tokens, listing) is tested on both in ``tests/contract/test_pull_contract.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import anyio
import asyncpg
import pytest

from pgqueue import (
    DatabaseUnavailableError,
    Job,
    JobState,
    LeaseLost,
    PgQueueError,
    Scheduler,
)
from pgqueue.pull import consumer as consumer_module
from pgqueue.store.postgres.pull import PullMixin
from tests._proxy import PgProxy
from tests._support import pg_store, running, runs, until, wait

pytestmark = pytest.mark.pg

PULLED = ("t", "a", "b", "anything", "unregistered")  # types no handler runs here
WAIT = 10.0  # seconds a test waits for what must happen well before


@pytest.fixture(autouse=True)
def _declared(scheduler: Scheduler) -> None:
    for name in PULLED:
        scheduler.declare(name)


@pytest.fixture
async def other(dsn: str, scheduler: Scheduler) -> AsyncIterator[Scheduler]:
    """A second scheduler on the same schema: another process's consumer, as far as leases go."""
    s = Scheduler(dsn, schema=scheduler.schema)
    for name in PULLED:
        s.declare(name)
    try:
        yield s
    finally:
        await s.close()


async def _job_row(db: asyncpg.Connection, schema: str, job_id: int) -> asyncpg.Record | None:
    return await db.fetchrow(
        f'SELECT worker_id, attempt, errors, lease_until, delayed FROM "{schema}".jobs WHERE id = $1', job_id
    )


async def _expire(db: asyncpg.Connection, schema: str, job_id: int) -> None:
    """Move a lease's deadline into the past, as if its consumer had stopped heartbeating."""
    await db.execute(
        f"UPDATE \"{schema}\".jobs SET lease_until = now() - interval '1 second' WHERE id = $1", job_id
    )


async def test_an_expired_lease_frees_the_job_and_counts_the_attempt(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    job_id = await scheduler.schedule("t", None, queue="q")
    lease = await scheduler.dequeue(queues=["q"], timeout=0, lease=0.2)
    assert lease is not None
    # A real deadline this time: wait until the database's clock has passed it.
    await until(lambda: _past(db, lease.expires_at))
    store = await pg_store(scheduler)
    assert await store.leases_release_expired(100) == 1
    row = await _job_row(db, scheduler.schema, job_id)
    assert row is not None
    assert (row["worker_id"], row["attempt"], row["lease_until"], row["delayed"]) == (None, 1, None, True)
    [run] = await runs(db, scheduler.schema, job_id)
    assert run["outcome"] == "crashed"
    assert "expired" in run["error"]
    assert (await scheduler.get_job(job_id)).state is JobState.PENDING
    again = await scheduler.dequeue(queues=["q"], timeout=0)
    assert again is not None
    assert again.attempt == 2


async def _past(db: asyncpg.Connection, when: dt.datetime) -> bool:
    return bool(await db.fetchval("SELECT now() > $1", when))


async def test_a_claiming_consumer_frees_an_expired_lease_with_no_worker_running(
    scheduler: Scheduler, other: Scheduler, db: asyncpg.Connection
) -> None:
    job_id = await scheduler.schedule("t", None, queue="q")
    lease = await scheduler.dequeue(queues=["q"], timeout=0)
    assert lease is not None
    await _expire(db, scheduler.schema, job_id)  # expired, not freed: no reaping round runs
    row = await _job_row(db, scheduler.schema, job_id)
    assert row is not None
    assert row["worker_id"] == lease.owner
    again = await other.dequeue(queues=["q"], timeout=0)  # its sweep frees the lease, then it claims
    assert again is not None
    assert (again.job.id, again.attempt) == (job_id, 2)
    outcomes = [(r["attempt"], r["outcome"]) for r in await runs(db, scheduler.schema, job_id)]
    assert outcomes == [(1, "crashed")]


async def test_pull_rows_are_not_reaped_as_dead_workers_and_are_forgotten_when_idle_and_empty(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    job_id = await scheduler.schedule("t", None, queue="q")
    lease = await scheduler.dequeue(queues=["q"], timeout=0, lease=600)
    assert lease is not None
    store = await pg_store(scheduler)
    await db.execute(f"UPDATE \"{scheduler.schema}\".workers SET heartbeat = now() - interval '1 hour'")
    assert await store.worker_reap(1.0, 0) == (0, 0)  # its lease is still good
    assert await store.consumers_forget(1.0) == 0  # it holds a job
    await lease.finish()
    await db.execute(f"UPDATE \"{scheduler.schema}\".workers SET heartbeat = now() - interval '1 hour'")
    assert await store.consumers_forget(1.0) == 1
    await scheduler.schedule("t", None, queue="q")
    again = await scheduler.dequeue(queues=["q"], timeout=0)  # registers again
    assert again is not None
    assert again.owner != lease.owner
    await again.finish()
    del job_id


async def test_an_unreachable_database_is_a_clear_error(schema_name: str) -> None:
    s = Scheduler("postgresql://nobody@127.0.0.1:1/none", schema=schema_name)
    try:
        with pytest.raises(DatabaseUnavailableError):
            await s.dequeue(timeout=0)
    finally:
        await s.close()


async def test_the_maintenance_leader_frees_an_expired_lease_and_a_worker_runs_the_job(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    done = anyio.Event()

    @scheduler.job("work", queue="wq")
    async def work(job: Job) -> None:
        done.set()

    job_id = await scheduler.schedule("work", None)
    lease = await scheduler.dequeue(queues=["wq"], timeout=0)
    assert lease is not None
    await _expire(db, scheduler.schema, job_id)
    async with running(scheduler.worker(["wq"], heartbeat_interval=0.05, dead_after=0.3)):
        await wait(done)
        await until(lambda: _ended(scheduler, job_id))
    outcomes = [(r["attempt"], r["outcome"]) for r in await runs(db, scheduler.schema, job_id)]
    assert outcomes == [(1, "crashed"), (2, "succeeded")]
    with pytest.raises(LeaseLost):
        await lease.finish()


async def _ended(scheduler: Scheduler, job_id: int) -> bool:
    return (await scheduler.get_job(job_id)).state.finished


async def test_closing_removes_the_consumer_row_unless_it_holds_leases(
    dsn: str, scheduler: Scheduler, other: Scheduler, db: asyncpg.Connection
) -> None:
    pulls = f"SELECT count(*) FROM \"{scheduler.schema}\".workers WHERE kind = 'pull'"
    a = Scheduler(dsn, schema=scheduler.schema)
    a.declare("t")
    await scheduler.schedule("t", None, queue="q")
    await scheduler.schedule("t", None, queue="q")
    kept = await a.dequeue(queues=["q"], timeout=0)
    assert kept is not None
    await a.close()
    assert await db.fetchval(pulls) == 1  # its lease is still good, and so its row
    same = await other.get_lease(kept.token)
    await same.finish()

    b = Scheduler(dsn, schema=scheduler.schema)
    b.declare("t")
    done = await b.dequeue(queues=["q"], timeout=0)
    assert done is not None
    await done.finish()
    await b.close()
    assert await db.fetchval(pulls) == 1  # b's row went; a's stays until forgotten


async def test_a_lease_carries_the_jobs_tenant_into_its_job_and_its_runs(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    job_id = await scheduler.schedule("t", None, queue="q", tenant="acme")
    lease = await scheduler.dequeue(queues=["q"], timeout=0)
    assert lease is not None
    assert lease.job.tenant == "acme"
    await _expire(db, scheduler.schema, job_id)
    assert await (await pg_store(scheduler)).leases_release_expired(10) == 1
    again = await scheduler.dequeue_by_id(job_id)
    await again.finish()
    tenants = [
        r["tenant"]
        for r in await db.fetch(
            f'SELECT tenant FROM "{scheduler.schema}".job_runs WHERE job_id = $1 ORDER BY attempt', job_id
        )
    ]
    assert tenants == ["acme", "acme"]


async def test_a_dequeue_without_queues_frees_an_expired_lease_in_a_queue_with_no_other_job(
    scheduler: Scheduler, other: Scheduler, db: asyncpg.Connection
) -> None:
    # The expired lease's queue has no unclaimed job, so only the sweep can bring it back.
    job_id = await scheduler.schedule("t", None, queue="lonely")
    first = await scheduler.dequeue(timeout=0)
    assert first is not None
    await _expire(db, scheduler.schema, job_id)
    second = await other.dequeue(timeout=0)
    assert second is not None
    assert (second.job.id, second.attempt) == (job_id, 2)


async def test_closing_the_scheduler_ends_a_waiting_dequeue_without_reopening_it(
    scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer_module, "RECHECK_S", 3600.0)
    ended: list[BaseException] = []

    async def wait_for_a_job() -> None:
        try:
            await scheduler.dequeue(queues=["q"])
        except PgQueueError as exc:
            ended.append(exc)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_a_job)
            await until(lambda: bool(scheduler._consumer and scheduler._consumer._wakeups._sub))
            await scheduler.close()
    assert [type(e) for e in ended] == [PgQueueError]
    assert "closed" in str(ended[0])
    assert scheduler._store is None  # the dequeue did not reopen the pool


async def test_a_claim_cut_short_by_the_closing_ends_with_the_closing_error(
    scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dequeue whose claim is in flight when close() begins: the closing closes the pool
    under it, and the call ends with the same PgQueueError as one started after it."""
    in_flight = anyio.Event()
    closing = anyio.Event()

    async def claim_while_closing(*args: object, **kwargs: object) -> object:
        in_flight.set()
        await closing.wait()
        raise asyncpg.InterfaceError("pool is closing")  # what the pool says to this claim now

    monkeypatch.setattr(PullMixin, "lease_claim_many", claim_while_closing)
    ended: list[BaseException] = []

    async def dequeue() -> None:
        try:
            await scheduler.dequeue(queues=["q"], timeout=0)
        except PgQueueError as exc:
            ended.append(exc)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(dequeue)
            await in_flight.wait()
            consumer = scheduler._consumer
            assert consumer is not None
            await consumer.close(None)  # the scheduler's close() begins with this
            closing.set()
    assert [str(e) for e in ended] == [consumer_module.CLOSED]


async def test_a_lease_call_during_an_outage_is_a_clear_error_and_the_lease_still_holds(
    dsn: str, scheduler: Scheduler
) -> None:
    proxy = await PgProxy(dsn).start()
    s = Scheduler(proxy.dsn, schema=scheduler.schema)
    s.declare("t")
    try:
        job_id = await scheduler.schedule("t", None, queue="q")
        lease = await s.dequeue(queues=["q"], timeout=0)
        assert lease is not None
        proxy.refusing = True  # new connections fail...
        proxy.cut()  # ...and the open ones drop: the database is unreachable
        for call in (lease.finish, lease.heartbeat, lambda: lease.fail("x"), lease.requeue, lease.release):
            with pytest.raises(DatabaseUnavailableError):
                await call()
        assert (await scheduler.get_job(job_id)).state is JobState.RUNNING  # nothing was written
        proxy.refusing = False
        await lease.finish("after the outage")
        assert (await scheduler.get_job(job_id)).result == "after the outage"
    finally:
        await s.close()
        await proxy.close()
