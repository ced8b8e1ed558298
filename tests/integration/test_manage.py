"""Job management, first part: get_job in every state, cancel_many, the handler verdicts."""

from __future__ import annotations

import datetime as dt
import threading

import anyio
import asyncpg
import pytest

from pgqueue import (
    Cancel,
    CancelCounts,
    CancelResult,
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
from tests._support import Counter, fired, hot_count, running, runs, until, wait

pytestmark = pytest.mark.pg


async def _logged(db: asyncpg.Connection, schema: str, job_id: int, n: int) -> None:
    async def enough() -> bool:
        return len(await runs(db, schema, job_id)) >= n

    await until(enough)


async def test_get_job_of_waiting_jobs(scheduler: Scheduler) -> None:
    scheduler.register("t", lambda job: None)
    now_id = await scheduler.schedule("t", {"a": [1, 2]}, priority=-3, queue="q1")
    later_id = await scheduler.schedule("t", None, run_at=dt.timedelta(hours=1))

    now = await scheduler.get_job(now_id)
    assert (now.id, now.type, now.queue, now.params, now.priority) == (now_id, "t", "q1", {"a": [1, 2]}, -3)
    assert now.state is JobState.PENDING
    assert (now.attempts, now.errors, now.last_error, now.runs) == (0, 0, None, ())
    assert (now.started_at, now.finished_at, now.result) == (None, None, None)
    assert now.run_at >= now.inserted_at

    later = await scheduler.get_job(later_id)
    assert later.state is JobState.SCHEDULED
    assert later.run_at - later.inserted_at == dt.timedelta(hours=1)
    assert not later.state.finished


async def test_get_job_of_a_running_and_then_succeeded_job(scheduler: Scheduler) -> None:
    started, release = Counter(1), anyio.Event()

    @scheduler.job("t")
    async def t(job: Job) -> dict[str, int]:
        started.hit(job.id)
        await release.wait()
        return {"n": 7}

    worker = scheduler.worker(poll_interval=60)
    async with running(worker):
        job_id = await scheduler.schedule("t", {"x": 1})
        await wait(started.done)
        live = await scheduler.get_job(job_id)
        assert live.state is JobState.RUNNING
        assert live.attempts == 1
        assert live.started_at is not None
        flushed = worker.signals.flushed.count
        release.set()
        await fired(worker.signals.flushed, flushed + 1)
    done = await scheduler.get_job(job_id)
    assert done.state is JobState.SUCCEEDED
    assert done.state.finished
    assert (done.type, done.queue, done.params, done.result) == ("t", "default", {"x": 1}, {"n": 7})
    assert done.inserted_at == live.inserted_at
    [run] = done.runs
    assert (run.attempt, run.outcome, run.result, run.error, run.retry_at) == (
        1,
        Outcome.SUCCEEDED,
        {"n": 7},
        None,
        None,
    )
    assert run.worker_id == worker.id
    assert done.finished_at == run.finished_at
    assert run.started_at <= run.finished_at


async def test_get_job_of_a_failed_job_keeps_every_run(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    @scheduler.job("t", retry=LinearBackoff(max_retries=2, base_delay=0))
    async def t(job: Job) -> None:
        raise ValueError(f"try {job.attempt}")

    async with running(scheduler.worker(poll_interval=60)):
        job_id = await scheduler.schedule("t")
        await _logged(db, scheduler.schema, job_id, 3)
    record = await scheduler.get_job(job_id)
    assert record.state is JobState.FAILED
    assert [(r.attempt, r.outcome) for r in record.runs] == [(i, Outcome.FAILED) for i in (1, 2, 3)]
    assert [r.retry_at is not None for r in record.runs] == [True, True, False]
    assert (record.attempts, record.errors) == (3, 3)
    assert record.last_error is not None
    assert "ValueError: try 3" in record.last_error
    assert record.result is None


async def test_get_job_of_an_unknown_id(scheduler: Scheduler) -> None:
    with pytest.raises(JobNotFound, match="job 424242 not found"):
        await scheduler.get_job(424242)
    with pytest.raises(LookupError):  # JobNotFound is a LookupError for code that does not know us
        await scheduler.get_job(424243)
    with pytest.raises(ConfigError):
        await scheduler.get_job("7")  # type: ignore[arg-type]


async def test_cancel_many_by_queue_and_by_type(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    for name in ("a", "b"):
        scheduler.register(name, lambda job: None)
    a1 = await scheduler.schedule("a", queue="q1")
    a2 = await scheduler.schedule("a", queue="q2", run_at=dt.timedelta(hours=1))
    b1 = await scheduler.schedule("b", queue="q1")
    b2 = await scheduler.schedule("b", queue="q2")

    assert await scheduler.cancel_many(queue="q1", type="a") == CancelCounts(cancelled=1, cancelling=0)
    assert (await scheduler.get_job(a1)).state is JobState.CANCELLED
    assert await scheduler.cancel_many(type="a") == CancelCounts(cancelled=1, cancelling=0)
    assert (await scheduler.get_job(a2)).state is JobState.CANCELLED
    assert await scheduler.cancel_many(queue="q2") == CancelCounts(cancelled=1, cancelling=0)
    assert [(await scheduler.get_job(i)).state for i in (b1, b2)] == [JobState.PENDING, JobState.CANCELLED]
    assert await scheduler.cancel_many(queue="nothing-here") == CancelCounts(cancelled=0, cancelling=0)
    [run] = (await scheduler.get_job(a1)).runs
    assert (run.outcome, run.error, run.worker_id) == (Outcome.CANCELLED, "cancelled before it ran", None)
    assert await hot_count(db, scheduler.schema) == 1


async def test_cancel_many_reaches_running_jobs(scheduler: Scheduler) -> None:
    started = Counter(2)

    @scheduler.job("hang")
    async def hang(job: Job) -> None:
        started.hit(job.id)
        await anyio.sleep_forever()

    worker = scheduler.worker(poll_interval=60)
    async with running(worker):
        ids = [await scheduler.schedule("hang") for _ in range(2)]
        await wait(started.done)
        waiting = await scheduler.schedule("hang", run_at=dt.timedelta(hours=1))
        assert await scheduler.cancel_many(type="hang") == CancelCounts(cancelled=1, cancelling=2)

        async def both_ended() -> bool:
            states = [(await scheduler.get_job(i)).state for i in ids]
            return states == [JobState.CANCELLED, JobState.CANCELLED]

        await until(both_ended)
    assert (await scheduler.get_job(waiting)).state is JobState.CANCELLED


async def test_cancel_many_needs_a_filter(scheduler: Scheduler) -> None:
    with pytest.raises(ConfigError, match="queue= or type="):
        await scheduler.cancel_many()
    with pytest.raises(ConfigError):
        await scheduler.cancel_many(queue="")


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


async def test_list_jobs_pages_newest_first_across_live_and_finished(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
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
    everything = sorted([*finished, *live], reverse=True)

    seen: list[int] = []
    page = await scheduler.list_jobs(limit=3)
    while True:
        seen += [r.id for r in page.items]
        if page.cursor is None:
            break
        page = await scheduler.list_jobs(limit=3, cursor=page.cursor)
    assert seen == everything

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


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 0},
        {"limit": 501},
        {"limit": True},
        {"state": "done"},
        {"cursor": "not-a-cursor"},
        {"cursor": "ajE6LTE"},  # a well-formed cursor for id -1
        {"queue": ""},
    ],
)
async def test_list_jobs_refuses_bad_arguments(scheduler: Scheduler, kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        await scheduler.list_jobs(**kwargs)  # type: ignore[arg-type]


async def test_queue_depth_and_stats_count_live_jobs(scheduler: Scheduler) -> None:
    started = Counter(1)

    @scheduler.job("hang", queue="slow")
    async def hang(job: Job) -> None:
        started.hit(job.id)
        await anyio.sleep_forever()

    scheduler.register("t", lambda job: None, queue="q1")
    await scheduler.schedule_many("t", range(3))
    await scheduler.schedule("t", run_at=dt.timedelta(hours=1))
    await scheduler.schedule("t", queue="q2")
    assert await scheduler.queue_depth() == 4
    assert await scheduler.queue_depth("q1") == 3
    async with running(scheduler.worker(queues=["slow"], poll_interval=60, shutdown_grace=0.1)):
        await scheduler.schedule("hang")
        await wait(started.done)
        stats = await scheduler.stats()
        assert await scheduler.queue_depth("slow") == 0  # running is not waiting
    assert stats.by_queue["q1"] == {
        JobState.PENDING: 3,
        JobState.SCHEDULED: 1,
        JobState.RUNNING: 0,
        JobState.SUSPENDED: 0,
        JobState.WAITING: 0,
    }
    assert stats.by_queue["q2"][JobState.PENDING] == 1
    assert stats.by_queue["slow"][JobState.RUNNING] == 1
    assert stats.by_type["t"] == {
        JobState.PENDING: 4,
        JobState.SCHEDULED: 1,
        JobState.RUNNING: 0,
        JobState.SUSPENDED: 0,
        JobState.WAITING: 0,
    }
    assert await scheduler.queue_depth("slow") == 1  # interrupted at shutdown: waiting again


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


async def test_delete_removes_a_waiting_job_and_refuses_a_running_one(scheduler: Scheduler) -> None:
    started = Counter(1)

    @scheduler.job("hang")
    async def hang(job: Job) -> None:
        started.hit(job.id)
        await anyio.sleep_forever()

    waiting = await scheduler.schedule("hang", run_at=dt.timedelta(hours=1))
    await scheduler.delete(waiting)
    with pytest.raises(JobNotFound):  # it never ran: nothing is left of it
        await scheduler.get_job(waiting)
    with pytest.raises(JobNotFound):
        await scheduler.delete(waiting)
    async with running(scheduler.worker(poll_interval=60, shutdown_grace=0.1)):
        busy = await scheduler.schedule("hang")
        await wait(started.done)
        with pytest.raises(InvalidStateError, match=f"job {busy} is running"):
            await scheduler.delete(busy)
        assert (await scheduler.get_job(busy)).state is JobState.RUNNING


async def test_snooze_puts_the_job_back_without_counting_the_run(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """max_attempts=1, yet two snoozes and a third run that succeeds: snoozed runs are
    neither errors nor counted runs, and they are logged with their due time."""
    seen: list[tuple[int, int]] = []

    @scheduler.job("t", max_attempts=1)
    async def t(job: Job) -> str:
        seen.append((job.attempt, job.errors))
        if job.attempt < 3:
            raise Snooze(dt.timedelta(seconds=0))
        return "done"

    async with running(scheduler.worker(poll_interval=60)):
        job_id = await scheduler.schedule("t")
        await _logged(db, scheduler.schema, job_id, 3)
    record = await scheduler.get_job(job_id)
    assert seen == [(1, 0), (2, 0), (3, 0)]
    assert [(r.attempt, r.outcome) for r in record.runs] == [
        (1, Outcome.SNOOZED),
        (2, Outcome.SNOOZED),
        (3, Outcome.SUCCEEDED),
    ]
    assert record.runs[0].error == "snoozed for 0 s"
    assert record.runs[0].retry_at is not None
    assert (record.state, record.result, record.errors) == (JobState.SUCCEEDED, "done", 0)


def test_snooze_checks_its_delay() -> None:
    with pytest.raises(ConfigError):
        Snooze(-1)
    assert Snooze(dt.timedelta(minutes=1)).delay == 60.0


async def test_wait_returns_at_once_for_a_job_that_already_ended(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    scheduler.register("t", lambda job: 5)
    async with running(scheduler.worker(poll_interval=60)):
        job_id = await scheduler.schedule("t")
        await _logged(db, scheduler.schema, job_id, 1)
    record = await scheduler.wait(job_id, timeout=30)
    assert (record.id, record.state, record.result) == (job_id, JobState.SUCCEEDED, 5)


async def test_wait_is_woken_when_a_running_job_ends(scheduler: Scheduler) -> None:
    started, release = Counter(1), anyio.Event()

    @scheduler.job("t")
    async def t(job: Job) -> str:
        started.hit(job.id)
        await release.wait()
        return "ok"

    async with running(scheduler.worker(poll_interval=60)):
        job_id = await scheduler.schedule("t")
        await wait(started.done)
        result: list[JobState] = []
        async with anyio.create_task_group() as tg:

            async def waiter() -> None:
                result.append((await scheduler.wait(job_id, timeout=30)).state)

            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert result == []  # still running: the waiter waits
            release.set()
        assert result == [JobState.SUCCEEDED]


async def test_wait_times_out_and_sees_cancels_and_unknown_ids(scheduler: Scheduler) -> None:
    scheduler.register("t", lambda job: None)
    later = await scheduler.schedule("t", run_at=dt.timedelta(hours=1))
    with pytest.raises(WaitTimeoutError, match=f"job {later} did not end within 0.2 s") as info:
        await scheduler.wait(later, timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    assert (await scheduler.get_job(later)).state is JobState.SCHEDULED  # the job goes on
    with pytest.raises(JobNotFound):
        await scheduler.wait(999_999, timeout=5)

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


async def test_suspend_and_resume_a_waiting_job(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    done = Counter(3)

    @scheduler.job("t")
    async def t(job: Job) -> None:
        done.hit(job.id)

    held = await scheduler.schedule("t")
    await scheduler.suspend(held)
    assert (await scheduler.get_job(held)).state is JobState.SUSPENDED
    with pytest.raises(InvalidStateError, match=f"job {held} is suspended"):
        await scheduler.suspend(held)
    async with running(scheduler.worker(poll_interval=60)):
        # Two later jobs run; the older, suspended one would be claimed first if it could be.
        others = [await scheduler.schedule("t"), await scheduler.schedule("t")]
        await until(lambda: len(done.calls) == 2)
        assert sorted(done.calls) == others
        stats = await scheduler.stats()
        assert stats.by_queue["default"][JobState.SUSPENDED] == 1
        await scheduler.resume(held)  # notified: the worker picks it up
        await wait(done.done)
    assert done.calls[2] == held
    with pytest.raises(InvalidStateError, match=f"job {held} is succeeded"):
        await scheduler.resume(held)
    with pytest.raises(JobNotFound):
        await scheduler.suspend(999_999)


async def test_a_suspended_job_can_be_cancelled_or_deleted(scheduler: Scheduler) -> None:
    scheduler.register("t", lambda job: None)
    a, b = await scheduler.schedule("t"), await scheduler.schedule("t")
    await scheduler.suspend(a)
    await scheduler.suspend(b)
    assert await scheduler.cancel(a) == CancelResult.CANCELLED
    assert (await scheduler.get_job(a)).state is JobState.CANCELLED
    await scheduler.delete(b)
    with pytest.raises(JobNotFound):
        await scheduler.get_job(b)


async def test_a_running_job_cannot_be_suspended(scheduler: Scheduler) -> None:
    started = Counter(1)

    @scheduler.job("hang")
    async def hang(job: Job) -> None:
        started.hit(job.id)
        await anyio.sleep_forever()

    async with running(scheduler.worker(poll_interval=60, shutdown_grace=0.1)):
        job_id = await scheduler.schedule("hang")
        await wait(started.done)
        with pytest.raises(InvalidStateError, match=f"job {job_id} is running"):
            await scheduler.suspend(job_id)


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


async def test_a_deleted_job_that_ran_before_is_gone_not_failed(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """Its last run put it back (a retry was due); after delete() nothing says how it ended:
    not found, not listed as failed, not revived by retry_many()."""

    @scheduler.job("t", retry=LinearBackoff(max_retries=3, base_delay=3600))
    async def t(job: Job) -> None:
        raise RuntimeError("later")

    async with running(scheduler.worker(poll_interval=60)):
        job_id = await scheduler.schedule("t")
        await _logged(db, scheduler.schema, job_id, 1)
    assert (await scheduler.get_job(job_id)).state is JobState.SCHEDULED
    await scheduler.delete(job_id)
    with pytest.raises(JobNotFound):
        await scheduler.get_job(job_id)
    assert (await scheduler.list_jobs()).items == ()
    assert await scheduler.retry_many(type="t") == []


async def test_the_last_page_has_no_cursor_even_when_full(scheduler: Scheduler) -> None:
    scheduler.register("t", lambda job: None)
    await scheduler.schedule_many("t", range(4))
    first = await scheduler.list_jobs(limit=2)
    assert first.cursor is not None
    second = await scheduler.list_jobs(limit=2, cursor=first.cursor)
    assert (len(second.items), second.cursor) == (2, None)


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

        async def blocked() -> bool:
            waiting = await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid() AND datname = current_database()"
            )
            return bool(waiting)

        await until(blocked)
        try:  # cancel_many waited first, so its deadlock check runs first and fails it
            await db.execute(f"SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE", first)
        finally:
            await tx.commit()
    assert counts == [CancelCounts(cancelled=2, cancelling=0)]
    assert [(await scheduler.get_job(i)).state for i in (first, second)] == [JobState.CANCELLED] * 2
