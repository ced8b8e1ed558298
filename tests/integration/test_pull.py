"""Pull mode on PostgreSQL: dequeue, claim, dequeue_by_id, fenced leases and their expiry."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import anyio
import asyncpg
import pytest

from pgqueue import (
    ConfigError,
    DatabaseUnavailableError,
    Job,
    JobCancelled,
    JobNotFound,
    JobState,
    LeaseLost,
    LinearBackoff,
    NotPending,
    ParamsEncodeError,
    Scheduler,
    WorkerHasActiveJobs,
)
from pgqueue.pull import consumer as consumer_module
from tests._support import pg_store, running, runs, until, wait

pytestmark = pytest.mark.pg

WAIT = 10.0  # seconds a test waits for what must happen well before


PULLED = ("t", "a", "b", "anything", "unregistered")  # types no handler runs here


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


async def test_a_blocking_dequeue_is_woken_by_a_schedule_on_another_connection(
    scheduler: Scheduler, other: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the notification the dequeue would look again only after an hour: the test's
    # deadline proves the wake-up came from the schedule.
    monkeypatch.setattr(consumer_module, "RECHECK_S", 3600.0)
    got: list[int] = []

    async def consume() -> None:
        lease = await scheduler.dequeue(queues=["q"], timeout=None)
        assert lease is not None
        got.append(lease.job.id)
        await lease.finish({"ok": True})

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            store = await pg_store(scheduler)
            await until(lambda: bool(scheduler._consumer and scheduler._consumer._wakeups._sub))
            assert await store.queues_with_jobs() == []
            job_id = await other.schedule("anything", {"n": 1}, queue="q")
    assert got == [job_id]
    record = await scheduler.get_job(job_id)
    assert record.state is JobState.SUCCEEDED
    assert record.result == {"ok": True}


async def test_dequeue_returns_none_at_its_timeout_and_zero_tries_once(scheduler: Scheduler) -> None:
    with anyio.fail_after(WAIT):
        assert await scheduler.dequeue(queues=["empty"], timeout=0.2) is None
        assert await scheduler.dequeue(timeout=0) is None
        job_id = await scheduler.schedule("t", None, queue="empty")
        lease = await scheduler.dequeue(queues=["empty"], timeout=0)
    assert lease is not None
    assert lease.job.id == job_id


async def test_dequeue_filters_by_type_and_without_queues_looks_in_every_queue(scheduler: Scheduler) -> None:
    await scheduler.schedule("a", None, queue="q1")
    b = await scheduler.schedule("b", None, queue="q2")
    lease = await scheduler.dequeue(types=["b"], timeout=0)
    assert lease is not None
    assert (lease.job.id, lease.job.type, lease.job.queue) == (b, "b", "q2")
    assert await scheduler.dequeue(types=["b"], timeout=0) is None


async def test_claim_takes_up_to_n_in_priority_order_and_finishing_them_at_once_ends_them_all(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    low = [await scheduler.schedule("t", {"i": i}, queue="q", priority=5) for i in range(3)]
    high = [await scheduler.schedule("t", {"i": i}, queue="q", priority=-5) for i in range(2)]
    leases = await scheduler.claim(4, queues=["q"])
    assert [lease.job.id for lease in leases] == high + low[:2]
    assert all(lease.attempt == 1 for lease in leases)
    await asyncio.gather(*(lease.finish(lease.job.id) for lease in leases))
    for lease in leases:
        record = await scheduler.get_job(lease.job.id)
        assert (record.state, record.result) == (JobState.SUCCEEDED, lease.job.id)
    assert [r["outcome"] for r in await runs(db, scheduler.schema)] == ["succeeded"] * 4
    rest = await scheduler.claim(10, queues=["q"])
    assert [lease.job.id for lease in rest] == [low[2]]


async def test_finish_after_the_lease_expired_and_was_leased_again_raises_lease_lost(
    scheduler: Scheduler, other: Scheduler, db: asyncpg.Connection
) -> None:
    job_id = await scheduler.schedule("t", None, queue="q")
    first = await scheduler.dequeue(queues=["q"], timeout=0)
    assert first is not None
    await _expire(db, scheduler.schema, job_id)
    second = await other.dequeue(queues=["q"], timeout=0)  # frees the expired lease, then takes it
    assert second is not None
    assert (second.job.id, second.attempt) == (job_id, 2)
    before = await _job_row(db, scheduler.schema, job_id)
    with pytest.raises(LeaseLost) as lost:
        await first.finish("stale")
    assert lost.value.job_id == job_id
    assert "held by worker" in str(lost.value.__notes__)
    with pytest.raises(LeaseLost):
        await first.heartbeat()
    with pytest.raises(LeaseLost):
        await first.fail("stale")
    assert await _job_row(db, scheduler.schema, job_id) == before  # unchanged
    await second.finish("fresh")
    record = await scheduler.get_job(job_id)
    assert record.result == "fresh"
    outcomes = [(r["attempt"], r["outcome"]) for r in await runs(db, scheduler.schema, job_id)]
    assert outcomes == [(1, "crashed"), (2, "succeeded")]


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


async def test_a_heartbeat_extends_the_lease_and_reports_a_cancel(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    job_id = await scheduler.schedule("t", None, queue="q")
    lease = await scheduler.dequeue(queues=["q"], timeout=0, lease=5)
    assert lease is not None
    first = lease.expires_at
    later = await lease.heartbeat(600)
    assert later > first + dt.timedelta(seconds=500)
    row = await _job_row(db, scheduler.schema, job_id)
    assert row is not None
    assert row["lease_until"] == later
    await scheduler.cancel(job_id)
    with pytest.raises(JobCancelled):
        await lease.heartbeat()
    assert await lease.fail("stopped") is None
    assert (await scheduler.get_job(job_id)).state is JobState.CANCELLED


async def test_fail_retries_by_the_types_filter_or_retry_at_and_is_final_otherwise(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    @scheduler.job("flaky", retry=LinearBackoff(max_retries=2, base_delay=60))
    async def flaky(job: Job) -> None: ...

    a = await scheduler.schedule("flaky", None, queue="q")
    lease = await scheduler.dequeue(types=["flaky"], timeout=0)
    assert lease is not None
    at = await lease.fail(RuntimeError("boom"))
    assert at is not None
    assert (await scheduler.get_job(a)).state is JobState.SCHEDULED
    [run] = await runs(db, scheduler.schema, a)
    assert (run["outcome"], run["retry_at"] is not None) == ("failed", True)
    assert "RuntimeError: boom" in run["error"]

    b = await scheduler.schedule("unregistered", None, queue="q")
    lease = await scheduler.dequeue(types=["unregistered"], timeout=0)
    assert lease is not None
    assert await lease.fail("plain text error") is None  # no filter: final
    record = await scheduler.get_job(b)
    assert record.state is JobState.FAILED
    assert record.runs[-1].error == "plain text error"

    c = await scheduler.schedule("unregistered", None, queue="q")
    lease = await scheduler.dequeue(types=["unregistered"], timeout=0)
    assert lease is not None
    when = await lease.fail("later", retry_at=dt.timedelta(hours=1))
    assert when is not None
    assert when > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=50)
    row = await _job_row(db, scheduler.schema, c)
    assert row is not None
    assert (row["worker_id"], row["errors"], row["lease_until"]) == (None, 1, None)


async def test_requeue_puts_the_job_back_and_ends_it_at_its_last_attempt(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    @scheduler.job("twice", max_attempts=2)
    async def twice(job: Job) -> None: ...

    job_id = await scheduler.schedule("twice", None, queue="q")
    lease = await scheduler.dequeue(queues=["q"], timeout=0)
    assert lease is not None
    assert await lease.requeue() is True
    again = await scheduler.dequeue(queues=["q"], timeout=0)
    assert again is not None
    assert again.attempt == 2
    assert await again.requeue() is False
    record = await scheduler.get_job(job_id)
    assert record.state is JobState.FAILED
    assert [r.outcome.value for r in record.runs] == ["interrupted", "failed"]


async def test_a_lease_is_finished_once(scheduler: Scheduler) -> None:
    job_id = await scheduler.schedule("t", None, queue="q")
    lease = await scheduler.dequeue(queues=["q"], timeout=0)
    assert lease is not None
    results = await asyncio.gather(lease.finish(1), lease.finish(2), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["LeaseLost", "NoneType"]
    assert (await scheduler.get_job(job_id)).result in (1, 2)


async def test_dequeue_by_id_leases_a_pending_job_and_refuses_others(
    scheduler: Scheduler, other: Scheduler
) -> None:
    later = await scheduler.schedule(
        "t", None, queue="q", run_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    )
    lease = await scheduler.dequeue_by_id(later)
    assert lease.job.id == later
    with pytest.raises(NotPending) as running:
        await other.dequeue_by_id(later)
    assert running.value.state == "running"
    await lease.finish()
    with pytest.raises(NotPending) as ended:
        await other.dequeue_by_id(later)
    assert ended.value.state == "succeeded"
    with pytest.raises(JobNotFound):
        await scheduler.dequeue_by_id(999_999)


async def test_a_token_acts_on_its_lease_from_another_scheduler(
    scheduler: Scheduler, other: Scheduler, db: asyncpg.Connection
) -> None:
    job_id = await scheduler.schedule("t", None, queue="q")
    lease = await scheduler.dequeue(queues=["q"], timeout=0)
    assert lease is not None
    same = await other.get_lease(lease.token)
    assert (same.job.id, same.attempt, same.owner) == (job_id, 1, lease.owner)
    await same.heartbeat(120)
    await same.finish({"by": "other"})
    with pytest.raises(LeaseLost):
        await other.get_lease(lease.token)
    assert (await scheduler.get_job(job_id)).result == {"by": "other"}
    [run] = await runs(db, scheduler.schema, job_id)
    assert run["worker_id"] == lease.owner


async def test_a_cancelled_or_exhausted_job_is_ended_at_the_claim_not_handed_out(
    scheduler: Scheduler, other: Scheduler, db: asyncpg.Connection
) -> None:
    for s in (scheduler, other):
        s.declare("once", max_attempts=1)
    job_id = await scheduler.schedule("once", None, queue="q")
    lease = await scheduler.dequeue(queues=["q"], timeout=0)
    assert lease is not None
    await _expire(db, scheduler.schema, job_id)
    assert await other.dequeue(queues=["q"], timeout=0) is None  # freed, then refused
    record = await scheduler.get_job(job_id)
    assert record.state is JobState.FAILED
    assert [r.outcome.value for r in record.runs] == ["crashed", "failed"]
    assert "gave up" in (record.runs[-1].error or "")

    cancelled = await scheduler.schedule("t", None, queue="q")
    lease = await scheduler.dequeue(queues=["q"], timeout=0)
    assert lease is not None
    await scheduler.cancel(cancelled)
    await _expire(db, scheduler.schema, cancelled)
    assert await (await pg_store(scheduler)).leases_release_expired(10) == 1  # sweeps wait SWEEP_S
    assert await other.dequeue(queues=["q"], timeout=0) is None
    assert (await scheduler.get_job(cancelled)).state is JobState.CANCELLED


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


async def test_bad_arguments_are_refused_before_anything_is_written(scheduler: Scheduler) -> None:
    for call in (
        lambda: scheduler.claim(0),
        lambda: scheduler.claim(1001),
        lambda: scheduler.claim(True),
        lambda: scheduler.dequeue(types="t", timeout=0),
        lambda: scheduler.dequeue(queues=[], timeout=0),
        lambda: scheduler.dequeue(timeout=-1),
        lambda: scheduler.dequeue(lease=0, timeout=0),
        lambda: scheduler.dequeue(lease=86401, timeout=0),
        lambda: scheduler.get_lease("1-2"),
        lambda: scheduler.get_lease("1-0-1"),
        lambda: scheduler.get_lease("99999999999999999999-1-1"),
    ):
        with pytest.raises(ConfigError):
            await call()
    assert scheduler._consumer is None


async def test_an_unreachable_database_is_a_clear_error(schema_name: str) -> None:
    s = Scheduler("postgresql://nobody@127.0.0.1:1/none", schema=schema_name)
    try:
        with pytest.raises(DatabaseUnavailableError):
            await s.dequeue(timeout=0)
    finally:
        await s.close()


async def test_pull_needs_the_postgres_backend() -> None:
    s = Scheduler.in_memory()
    with pytest.raises(ConfigError, match="PostgreSQL"):
        await s.claim(1)


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


async def test_a_result_that_cannot_be_encoded_writes_nothing_and_the_lease_still_holds(
    scheduler: Scheduler,
) -> None:
    job_id = await scheduler.schedule("t", None, queue="q")
    lease = await scheduler.dequeue(queues=["q"], timeout=0)
    assert lease is not None
    with pytest.raises(ParamsEncodeError):
        await lease.finish(object())
    assert (await scheduler.get_job(job_id)).state is JobState.RUNNING
    await lease.finish([1, 2])
    assert (await scheduler.get_job(job_id)).result == [1, 2]


async def test_a_pull_consumer_is_listed_and_removing_it_releases_its_leases(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    job_id = await scheduler.schedule("t", None, queue="q")
    lease = await scheduler.dequeue(queues=["q"], timeout=0)
    assert lease is not None
    [info] = [w for w in await scheduler.list_workers() if w.id == lease.owner]
    assert (info.kind, info.concurrency, info.jobs_held, info.queues) == ("pull", None, 1, ("q",))
    with pytest.raises(WorkerHasActiveJobs):
        await scheduler.remove_worker(lease.owner)
    assert await scheduler.remove_worker(lease.owner, force=True) == 1
    row = await _job_row(db, scheduler.schema, job_id)
    assert row is not None
    assert (row["worker_id"], row["lease_until"]) == (None, None)
    with pytest.raises(LeaseLost):
        await lease.finish()
    again = await scheduler.dequeue(queues=["q"], timeout=0)  # registers a new consumer
    assert again is not None
    assert (again.attempt, again.owner != lease.owner) == (2, True)


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
