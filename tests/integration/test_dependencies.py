"""schedule(..., depends_on=[...]): waiting, release on success, transitive cancel otherwise."""

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
    Outcome,
    Scheduler,
)
from tests._support import Counter, drop_schema, hot_count, running, until, wait

pytestmark = pytest.mark.pg


async def _state(scheduler: Scheduler, job_id: int) -> JobState:
    return (await scheduler.get_job(job_id)).state


async def _ended(scheduler: Scheduler, *ids: int) -> None:
    async def all_ended() -> bool:
        return all([(await _state(scheduler, i)).finished for i in ids])

    await until(all_ended)


async def test_a_chain_runs_in_order_and_is_released_by_notification(scheduler: Scheduler) -> None:
    order: list[str] = []

    @scheduler.job("step")
    async def step(job: Job) -> None:
        order.append(job.params)

    a = await scheduler.schedule("step", "a", run_at=None)
    b = await scheduler.schedule("step", "b", depends_on=[a])
    c = await scheduler.schedule("step", "c", depends_on=[b])

    rec_b = await scheduler.get_job(b)
    assert rec_b.state is JobState.WAITING
    assert (rec_b.depends_on, rec_b.dependents) == ((a,), (c,))
    assert (await scheduler.get_job(a)).dependents == (b,)
    stats = await scheduler.stats()
    assert stats.by_type["step"][JobState.WAITING] == 2
    assert stats.by_type["step"][JobState.PENDING] == 1
    assert {r.id for r in (await scheduler.list_jobs(state="waiting")).items} == {b, c}

    # A poll interval far beyond the test's wait: only the notifications can release b and c.
    async with running(scheduler.worker(poll_interval=3600)):
        await _ended(scheduler, a, b, c)
    assert order == ["a", "b", "c"]
    records = [await scheduler.get_job(i) for i in (a, b, c)]
    assert all(r.state is JobState.SUCCEEDED for r in records)
    assert records[0].finished_at is not None
    assert records[1].started_at is not None
    assert records[1].started_at >= records[0].finished_at
    assert records[2].depends_on == (b,)  # edges outlive the jobs


async def test_a_diamond_runs_the_join_once_after_both_branches(scheduler: Scheduler) -> None:
    seen: list[str] = []
    done = Counter(4)

    @scheduler.job("node")
    async def node(job: Job) -> None:
        seen.append(job.params)
        done.hit(job.id)

    a = await scheduler.schedule("node", "a")
    b = await scheduler.schedule("node", "b", depends_on=[a])
    c = await scheduler.schedule("node", "c", depends_on=[a])
    d = await scheduler.schedule("node", "d", depends_on=[c, b, b])  # repeats count once
    assert (await scheduler.get_job(d)).depends_on == (b, c)

    async with running(scheduler.worker(concurrency=4, poll_interval=3600)):
        await wait(done.done)
        await _ended(scheduler, d)
    assert seen[0] == "a"
    assert sorted(seen[1:3]) == ["b", "c"]
    assert seen[3:] == ["d"]
    assert len((await scheduler.get_job(d)).runs) == 1


async def test_a_failed_dependency_cancels_its_dependents_transitively(scheduler: Scheduler) -> None:
    ran: list[str] = []

    @scheduler.job("ok")
    async def ok(job: Job) -> None:
        ran.append(job.params)

    @scheduler.job("boom")
    async def boom(job: Job) -> None:
        raise RuntimeError("boom")

    a = await scheduler.schedule("boom", None)
    other = await scheduler.schedule("ok", "other", run_at=None)
    await scheduler.suspend(other)  # d also waits on it: a's failure must end d anyway
    b = await scheduler.schedule("ok", "b", depends_on=[a])
    c = await scheduler.schedule("ok", "c", depends_on=[b])
    d = await scheduler.schedule("ok", "d", depends_on=[a, other])
    e = await scheduler.schedule("ok", "e", depends_on=[other])  # not downstream of a

    async def waiter() -> JobState:
        return (await scheduler.wait(c, timeout=30)).state

    async with anyio.create_task_group() as tg, running(scheduler.worker(poll_interval=3600)):
        waited: list[JobState] = []

        async def wait_c() -> None:
            waited.append(await waiter())

        tg.start_soon(wait_c)
        await _ended(scheduler, a, b, c, d)
    assert waited == [JobState.CANCELLED]
    assert ran == []
    assert (await scheduler.get_job(a)).state is JobState.FAILED
    rb, rc, rd = (await scheduler.get_job(b)), (await scheduler.get_job(c)), (await scheduler.get_job(d))
    assert [r.state for r in (rb, rc, rd)] == [JobState.CANCELLED] * 3
    assert rb.runs[-1].outcome is Outcome.CANCELLED
    assert rb.runs[-1].error == f"dependency {a} failed"
    assert rc.runs[-1].error == f"dependency {b} was cancelled (dependency {a} failed)"
    assert rd.runs[-1].error == f"dependency {a} failed"
    assert (await _state(scheduler, e)) is JobState.WAITING
    assert (await _state(scheduler, other)) is JobState.SUSPENDED


async def test_cancel_and_delete_of_a_dependency_cancel_its_dependents(scheduler: Scheduler) -> None:
    scheduler.register("t", lambda job: None)
    a = await scheduler.schedule("t", None)
    b = await scheduler.schedule("t", None, depends_on=[a])
    x = await scheduler.schedule("t", None)
    y = await scheduler.schedule("t", None, depends_on=[x])
    z = await scheduler.schedule("t", None, depends_on=[y])

    await scheduler.cancel(a)
    rb = await scheduler.get_job(b)
    assert rb.state is JobState.CANCELLED
    assert rb.runs[-1].error == f"dependency {a} was cancelled"

    await scheduler.delete(x)
    rz = await scheduler.get_job(z)
    assert rz.state is JobState.CANCELLED
    assert rz.runs[-1].error == f"dependency {y} was cancelled (dependency {x} was deleted)"
    assert (await _state(scheduler, y)) is JobState.CANCELLED


async def test_cancelling_or_deleting_a_waiting_job_leaves_its_dependency_alone(
    scheduler: Scheduler,
) -> None:
    done = Counter(1)

    @scheduler.job("t")
    async def t(job: Job) -> None:
        done.hit(job.id)

    a = await scheduler.schedule("t", None)
    b = await scheduler.schedule("t", None, depends_on=[a])
    c = await scheduler.schedule("t", None, depends_on=[a])
    await scheduler.cancel(b)
    await scheduler.delete(c)
    async with running(scheduler.worker(poll_interval=3600)):
        await wait(done.done)
        await _ended(scheduler, a)
    assert (await _state(scheduler, a)) is JobState.SUCCEEDED
    assert (await _state(scheduler, b)) is JobState.CANCELLED
    with pytest.raises(JobNotFound):
        await scheduler.get_job(c)  # deleted before any run: nothing logged


async def test_a_succeeded_dependency_counts_as_met(scheduler: Scheduler) -> None:
    done = Counter(2)

    @scheduler.job("t")
    async def t(job: Job) -> None:
        done.hit(job.id)

    a = await scheduler.schedule("t", None)
    async with running(scheduler.worker(poll_interval=3600)):
        await _ended(scheduler, a)
        b = await scheduler.schedule("t", None, depends_on=[a])
        assert (await scheduler.get_job(b)).depends_on == (a,)
        await wait(done.done)
        await _ended(scheduler, b)
    assert (await _state(scheduler, b)) is JobState.SUCCEEDED


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


async def test_an_empty_depends_on_is_a_plain_job(scheduler: Scheduler) -> None:
    scheduler.register("t", lambda job: None)
    job_id = await scheduler.schedule("t", None, depends_on=[])
    assert (await _state(scheduler, job_id)) is JobState.PENDING


async def test_waiting_jobs_cannot_be_suspended_and_are_cancelled_by_cancel_many(
    scheduler: Scheduler,
) -> None:
    scheduler.register("t", lambda job: None)
    a = await scheduler.schedule("t", None, run_at=None)
    await scheduler.suspend(a)
    b = await scheduler.schedule("t", None, depends_on=[a])
    with pytest.raises(InvalidStateError, match=rf"job {b} is waiting"):
        await scheduler.suspend(b)
    with pytest.raises(InvalidStateError, match=rf"job {b} is waiting"):
        await scheduler.resume(b)
    counts = await scheduler.cancel_many(type="t")
    assert (counts.cancelled, counts.cancelling) == (2, 0)
    assert (await _state(scheduler, b)) is JobState.CANCELLED


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
