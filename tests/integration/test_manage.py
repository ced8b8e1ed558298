"""Job management on PostgreSQL: what the rows say after cancel_many, retry and verdicts;
paging under load; waits and their LISTEN connection; progress writes; a deadlock.

The behaviours themselves, on both backends: tests/contract/test_manage_contract.py."""

from __future__ import annotations

import datetime as dt
import threading

import anyio
import asyncpg
import pytest

from pgqueue import (
    Cancel,
    CancelCounts,
    ConfigError,
    InvalidStateError,
    Job,
    JobNotFound,
    JobState,
    LinearBackoff,
    Outcome,
    Scheduler,
    Skip,
    Snooze,
    WaitTimeoutError,
)
from tests._support import Counter, fired, hot_count, lock_wait, running, runs, until, wait

pytestmark = pytest.mark.pg


async def _logged(db: asyncpg.Connection, schema: str, job_id: int, n: int) -> None:
    async def enough() -> bool:
        return len(await runs(db, schema, job_id)) >= n

    await until(enough)


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_handler_verdicts_end_the_job_at_once(
    scheduler: Scheduler, db: asyncpg.Connection, sync: bool
) -> None:
    """Cancel and Skip win over the retry filter: one run each, no retry, not an error."""
    retry = LinearBackoff(max_retries=5, base_delay=0)
    if sync:

        @scheduler.job("cancel", retry=retry)
        def cancel_sync(job: Job) -> None:
            raise Cancel("the account was closed")

        @scheduler.job("skip", retry=retry)
        def skip_sync(job: Job) -> None:
            raise Skip("nothing to send today")

    else:

        @scheduler.job("cancel", retry=retry)
        async def cancel(job: Job) -> None:
            raise Cancel("the account was closed")

        @scheduler.job("skip", retry=retry)
        async def skip(job: Job) -> None:
            raise Skip("nothing to send today")

    async with running(scheduler.worker(poll_interval=60)):
        cancelled = await scheduler.schedule("cancel")
        skipped = await scheduler.schedule("skip")
        await _logged(db, scheduler.schema, cancelled, 1)
        await _logged(db, scheduler.schema, skipped, 1)
    c, s = await scheduler.get_job(cancelled), await scheduler.get_job(skipped)
    assert (c.state, c.errors, [(r.outcome, r.error) for r in c.runs]) == (
        JobState.CANCELLED,
        0,
        [(Outcome.CANCELLED, "the account was closed")],
    )
    assert (s.state, s.errors, s.result, [(r.outcome, r.error) for r in s.runs]) == (
        JobState.SUCCEEDED,
        0,
        None,
        [(Outcome.SUCCEEDED, "skipped: nothing to send today")],
    )
    assert await hot_count(db, scheduler.schema) == 0


async def test_list_jobs_filters_finished_and_live_jobs_together(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """A state filter over several finished jobs, and all three filters at once (paging
    itself: tests/contract)."""
    done = Counter(6)

    @scheduler.job("t")
    async def t(job: Job) -> None:
        done.hit(job.id)

    finished = await scheduler.schedule_many("t", range(6))
    async with running(scheduler.worker(poll_interval=60)):
        await wait(done.done)

        async def all_logged() -> bool:
            return len(await runs(db, scheduler.schema)) == 6

        await until(all_logged)
    live = await scheduler.schedule_many("t", range(4), run_at=dt.timedelta(hours=1))
    failed_or_none = await scheduler.list_jobs(state="failed")
    assert (failed_or_none.items, failed_or_none.cursor) == ((), None)
    succeeded = await scheduler.list_jobs(state=JobState.SUCCEEDED, limit=500)
    assert [r.id for r in succeeded.items] == sorted(finished, reverse=True)
    assert all(len(r.runs) == 1 and r.state is JobState.SUCCEEDED for r in succeeded.items)
    scheduled = await scheduler.list_jobs(state="scheduled", type="t", queue="default")
    assert [r.id for r in scheduled.items] == sorted(live, reverse=True)
    assert (await scheduler.list_jobs(queue="elsewhere")).items == ()


async def test_paging_while_jobs_are_inserted_and_finished_has_no_duplicates_or_gaps(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """Page through 10,000 jobs while a worker finishes them and new ones arrive: every job
    that existed when paging began is seen exactly once, and no newer one shows up."""
    scheduler.register("t", lambda job: None)
    existing = await scheduler.schedule_many("t", range(10_000))
    worker = scheduler.worker(poll_interval=60, concurrency=4)
    seen: list[int] = []
    async with running(worker):
        page = await scheduler.list_jobs(limit=500)
        newer: list[int] = []
        while True:
            seen += [r.id for r in page.items]
            newer += await scheduler.schedule_many("t", range(50))  # arrive while paging
            if page.cursor is None:
                break
            page = await scheduler.list_jobs(limit=500, cursor=page.cursor)
        assert worker.flushes > 0  # jobs did finish while the pages were read
    assert seen == sorted(existing, reverse=True)
    assert not set(newer) & set(seen)


async def test_retry_of_a_failed_job_keeps_its_id_and_history_with_a_fresh_budget(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """max_attempts=2: two runs, failed. retry(): runs 3 and 4 (numbering continues), again
    two runs of budget (not refused at once), appended to the same history."""
    seen: list[tuple[int, int]] = []

    @scheduler.job("t", retry=LinearBackoff(max_retries=5, base_delay=0), max_attempts=2)
    async def t(job: Job) -> None:
        seen.append((job.attempt, job.errors))
        raise ValueError(f"run {job.attempt}")

    async with running(scheduler.worker(poll_interval=60)):
        job_id = await scheduler.schedule("t", {"k": 1})
        await _logged(db, scheduler.schema, job_id, 2)
        assert (await scheduler.get_job(job_id)).state is JobState.FAILED
        await scheduler.retry(job_id)
        assert (await scheduler.get_job(job_id)).state in {JobState.PENDING, JobState.RUNNING}
        await _logged(db, scheduler.schema, job_id, 4)
    record = await scheduler.get_job(job_id)
    assert record.state is JobState.FAILED
    assert [r.attempt for r in record.runs] == [1, 2, 3, 4]
    assert seen == [(1, 0), (2, 1), (3, 0), (4, 1)]  # errors start afresh too
    assert (record.params, record.inserted_at) == ({"k": 1}, record.runs[0].run_at)


async def test_retry_refuses_live_and_succeeded_jobs_and_changes_nothing(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    done = Counter(1)

    @scheduler.job("t")
    async def t(job: Job) -> None:
        done.hit(job.id)

    async with running(scheduler.worker(poll_interval=60)):
        ok = await scheduler.schedule("t")
        await wait(done.done)
        await _logged(db, scheduler.schema, ok, 1)
    waiting = await scheduler.schedule("t", run_at=dt.timedelta(hours=1))
    with pytest.raises(InvalidStateError, match=f"job {ok} is succeeded") as info:
        await scheduler.retry(ok)
    assert info.value.state == "succeeded"
    with pytest.raises(InvalidStateError, match=f"job {waiting} is scheduled"):
        await scheduler.retry(waiting)
    with pytest.raises(JobNotFound):
        await scheduler.retry(999_999)
    assert (await scheduler.get_job(ok)).state is JobState.SUCCEEDED
    assert await hot_count(db, scheduler.schema) == 1


async def test_retry_many_puts_back_the_failed_jobs_of_a_type(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    @scheduler.job("bad")
    async def bad(job: Job) -> None:
        raise RuntimeError("no")

    scheduler.register("good", lambda job: None)
    async with running(scheduler.worker(poll_interval=60)):
        failed = await scheduler.schedule_many("bad", range(3))
        for job_id in failed:
            await _logged(db, scheduler.schema, job_id, 1)
    cancelled = await scheduler.schedule("bad", run_at=dt.timedelta(hours=1))
    await scheduler.cancel(cancelled)
    assert await scheduler.retry_many(type="good") == []
    assert await scheduler.retry_many(type="bad") == sorted(failed)  # failed ones only
    assert [(await scheduler.get_job(i)).state for i in failed] == [JobState.PENDING] * 3
    assert (await scheduler.get_job(cancelled)).state is JobState.CANCELLED
    assert await scheduler.retry_many(type="bad") == []  # live now: nothing to do twice


def test_snooze_checks_its_delay() -> None:
    with pytest.raises(ConfigError):
        Snooze(-1)
    assert Snooze(dt.timedelta(minutes=1)).delay == 60.0


async def test_a_wait_that_timed_out_leaves_the_job_to_a_later_wait(scheduler: Scheduler) -> None:
    """The same job waited on again after a wait timed out: the later wait is told of its end."""
    scheduler.register("t", lambda job: None)
    later = await scheduler.schedule("t", run_at=dt.timedelta(hours=1))
    with pytest.raises(WaitTimeoutError, match=f"job {later} did not end within 0.2 s") as info:
        await scheduler.wait(later, timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    assert (await scheduler.get_job(later)).state is JobState.SCHEDULED  # the job goes on

    async with anyio.create_task_group() as tg:
        states: list[JobState] = []

        async def waiter() -> None:
            states.append((await scheduler.wait(later, timeout=30)).state)

        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        await scheduler.cancel(later)  # a waiting job ended by cancel(): the waiter is told
    assert states == [JobState.CANCELLED]


async def test_many_waiters_share_one_subscription_and_it_closes_after_the_last(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    scheduler.register("t", lambda job: None)
    ids = await scheduler.schedule_many("t", range(5), run_at=dt.timedelta(hours=1))
    listeners = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgqueue-listener'"
    before = await db.fetchval(listeners)
    async with anyio.create_task_group() as tg:
        for job_id in ids:
            tg.start_soon(scheduler.wait, job_id, 30)
        await anyio.wait_all_tasks_blocked()
        assert await db.fetchval(listeners) == before + 1
        assert await scheduler.cancel_many(type="t") == CancelCounts(cancelled=5, cancelling=0)

    async def closed() -> bool:
        return bool(await db.fetchval(listeners) == before)

    await until(closed)


async def test_progress_is_coalesced_and_visible_while_the_job_runs(scheduler: Scheduler) -> None:
    reported, release = Counter(1), anyio.Event()

    @scheduler.job("t")
    async def t(job: Job) -> None:
        for i in range(1, 101):
            await job.set_progress(i / 100, f"step {i}")  # no await yields: one burst
        reported.hit(job.id)
        await release.wait()

    worker = scheduler.worker(poll_interval=60, progress_interval=0.05)
    async with running(worker):
        job_id = await scheduler.schedule("t")
        await wait(reported.done)
        await fired(worker.signals.progress_written, 1)
        record = await scheduler.get_job(job_id)
        assert (record.state, record.progress, record.progress_message) == (JobState.RUNNING, 1.0, "step 100")
        assert worker.signals.progress_written.count == 1  # a hundred reports, one write
        release.set()
    done = await scheduler.get_job(job_id)
    assert (done.state, done.progress) == (JobState.SUCCEEDED, None)


async def test_progress_takes_fractions_or_percents(scheduler: Scheduler) -> None:
    seen = Counter(1)

    @scheduler.job("t")
    async def t(job: Job) -> None:
        await job.set_progress(50)  # a percent
        seen.hit(None)
        with pytest.raises(ConfigError):
            await job.set_progress(101)
        with pytest.raises(ConfigError):
            await job.set_progress(float("nan"))

    worker = scheduler.worker(poll_interval=60, progress_interval=0.05)
    async with running(worker):
        job_id = await scheduler.schedule("t")
        await wait(seen.done)
        await fired(worker.signals.progress_written, 1)
    assert (await scheduler.get_job(job_id)).state is JobState.SUCCEEDED


async def test_set_progress_outside_a_worker_does_nothing() -> None:
    job = Job(id=1, type="t")
    await job.set_progress(0.5)  # a hand-built job: no worker to report to


async def test_a_sync_handler_reports_progress_through_from_thread(scheduler: Scheduler) -> None:
    reported, release = Counter(1), threading.Event()

    @scheduler.job("t")
    def t(job: Job) -> None:
        anyio.from_thread.run(job.set_progress, 0.4, "from a thread")
        reported.hit(job.id)
        release.wait(30)

    worker = scheduler.worker(poll_interval=60, progress_interval=0.05)
    async with running(worker):
        job_id = await scheduler.schedule("t")
        await fired(worker.signals.progress_written, 1)
        record = await scheduler.get_job(job_id)
        assert record.progress is not None
        assert abs(record.progress - 0.4) < 1e-6  # stored as real
        assert record.progress_message == "from a thread"
        release.set()


async def test_a_snooze_keeps_the_last_failure_and_progress_starts_afresh(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    seen: list[tuple[int, str | None]] = []

    @scheduler.job("t", retry=LinearBackoff(max_retries=5, base_delay=0))
    async def t(job: Job) -> None:
        seen.append((job.attempt, job.last_error and job.last_error.splitlines()[-1]))
        if job.attempt == 1:
            await job.set_progress(0.5, "half\x00way")  # a NUL is escaped, not a failed write
            raise ValueError("first")
        if job.attempt == 2:
            raise Snooze(0)

    async with running(scheduler.worker(poll_interval=60, progress_interval=0.01)):
        job_id = await scheduler.schedule("t")
        await _logged(db, scheduler.schema, job_id, 3)
    assert seen == [(1, None), (2, "ValueError: first"), (3, "ValueError: first")]
    record = await scheduler.get_job(job_id)
    assert (record.state, record.progress) == (JobState.SUCCEEDED, None)


async def test_closing_the_scheduler_ends_its_waits(dsn: str, scheduler: Scheduler) -> None:
    """A waiter does not hang, nor open the closed scheduler's pool again: it raises."""
    other = Scheduler(dsn, schema=scheduler.schema)
    other.register("t", lambda job: None)
    later = await other.schedule("t", run_at=dt.timedelta(hours=1))
    errors: list[BaseException] = []

    async def waiter() -> None:
        try:
            await other.wait(later)
        except Exception as exc:
            errors.append(exc)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            await other.close()
    assert len(errors) == 1
    assert "closed while waiting" in str(errors[0])


async def test_cancel_many_runs_again_when_postgresql_breaks_a_deadlock_with_it(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """Another transaction holds job 2 and then asks for job 1, which cancel_many (locking
    in id order) holds while it waits for job 2: PostgreSQL fails one of the two. When it
    is cancel_many, the transaction runs again once the other has committed."""
    scheduler.register("t", lambda job: None)
    first, second = await scheduler.schedule_many("t", [1, 2])
    table = f'"{scheduler.schema}".jobs'
    tx = db.transaction()
    await tx.start()
    await db.execute(f"SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE", second)
    async with anyio.create_task_group() as tg:
        counts: list[CancelCounts] = []

        async def cancel_all() -> None:
            counts.append(await scheduler.cancel_many(type="t"))

        tg.start_soon(cancel_all)

        await lock_wait(db)
        try:  # cancel_many waited first, so its deadlock check runs first and fails it
            await db.execute(f"SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE", first)
        finally:
            await tx.commit()
    assert counts == [CancelCounts(cancelled=2, cancelling=0)]
    assert [(await scheduler.get_job(i)).state for i in (first, second)] == [JobState.CANCELLED] * 2
