"""Job management on each backend: get_job, list_jobs, counts, cancel, retry, delete, suspend, wait."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import pytest

from pgqueue import (
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
    WaitTimeoutError,
)
from tests._support import Counter, running, wait
from tests.contract._helpers import Hold, ended, logged, raising, run_until_ended, wait_in_background

_LIVE = (JobState.PENDING, JobState.SCHEDULED, JobState.RUNNING, JobState.SUSPENDED, JobState.WAITING)


@dataclass
class Zoo:
    """One job in each state, the running one held by a live worker."""

    ids: dict[JobState, int]


@asynccontextmanager
async def every_state(s: Scheduler) -> AsyncIterator[Zoo]:
    """Jobs in all eight states; the running one runs until the block ends (then interrupted)."""
    hold = Hold()

    @s.job("ok")
    async def ok(job: Job) -> str:
        return "fine"

    s.register("bad", raising(RuntimeError, "no"))
    s.register("hang", hold.run)

    ids: dict[JobState, int] = {}
    async with running(s.worker(poll_interval=3600, shutdown_grace=0.01)):
        ids[JobState.SUCCEEDED] = await s.schedule("ok", "s")
        ids[JobState.FAILED] = await s.schedule("bad", "f")
        ids[JobState.RUNNING] = await s.schedule("hang", "r")
        await wait(hold.started.done)
        await ended(s, ids[JobState.SUCCEEDED], ids[JobState.FAILED])
        # The rest in a queue no worker serves.
        ids[JobState.PENDING] = await s.schedule("ok", "p", queue="idle")
        ids[JobState.SCHEDULED] = await s.schedule("ok", "sc", queue="idle", run_at=dt.timedelta(hours=1))
        ids[JobState.SUSPENDED] = await s.schedule("ok", "su", queue="idle")
        await s.suspend(ids[JobState.SUSPENDED])
        ids[JobState.WAITING] = await s.schedule(
            "ok", "w", queue="idle", depends_on=[ids[JobState.SCHEDULED]]
        )
        ids[JobState.CANCELLED] = await s.schedule("ok", "c", queue="idle")
        assert await s.cancel(ids[JobState.CANCELLED]) is CancelResult.CANCELLED
        yield Zoo(ids)


async def test_get_job_in_every_state(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    async with every_state(s) as zoo:
        records = {state: await s.get_job(job_id) for state, job_id in zoo.ids.items()}
        for state, record in records.items():
            assert (record.id, record.state, record.state.finished) == (
                zoo.ids[state],
                state,
                state not in _LIVE,
            )
        # Live jobs have no end; ended ones do.
        assert {st for st, r in records.items() if r.finished_at is None} == set(_LIVE)
        running_job = records[JobState.RUNNING]
        assert (running_job.attempts, running_job.started_at is not None, running_job.runs) == (1, True, ())
        succeeded = records[JobState.SUCCEEDED]
        assert (succeeded.result, succeeded.attempts, [r.outcome for r in succeeded.runs]) == (
            "fine",
            1,
            [Outcome.SUCCEEDED],
        )
        failed = records[JobState.FAILED]
        assert (failed.errors, failed.result, [r.outcome for r in failed.runs]) == (1, None, [Outcome.FAILED])
        assert "RuntimeError: no" in (failed.last_error or "")
        cancelled = records[JobState.CANCELLED]
        assert cancelled.attempts == 1  # the number of its cancelled row
        assert [(r.attempt, r.outcome, r.error, r.worker_id, r.retry_at) for r in cancelled.runs] == [
            (1, Outcome.CANCELLED, "cancelled before it ran", None, None)
        ]
        assert (cancelled.params, cancelled.queue, cancelled.type) == ("c", "idle", "ok")
        waiting = records[JobState.WAITING]
        assert waiting.depends_on == (zoo.ids[JobState.SCHEDULED],)
        assert records[JobState.SCHEDULED].dependents == (waiting.id,)
        for state in (JobState.PENDING, JobState.SCHEDULED, JobState.SUSPENDED, JobState.WAITING):
            assert (records[state].attempts, records[state].runs, records[state].started_at) == (0, (), None)


async def test_get_job_of_an_unknown_id_or_a_bad_one(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    with pytest.raises(JobNotFound, match="job 424242 not found"):
        await s.get_job(424242)
    with pytest.raises(LookupError):
        await s.get_job(424243)
    for bad in ("7", 1.0, True, None):
        with pytest.raises(ConfigError, match="job_id must be an integer"):
            await s.get_job(bad)  # type: ignore[arg-type]


async def test_list_jobs_pages_newest_first_across_live_and_finished(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler

    @s.job("t")
    async def t(job: Job) -> int:
        return int(job.params)

    finished = await s.schedule_many("t", range(6))
    await run_until_ended(s, *finished)
    live = await s.schedule_many("t", range(4), run_at=dt.timedelta(hours=1))
    everything = sorted([*finished, *live], reverse=True)

    seen: list[int] = []
    pages = 0
    page = await s.list_jobs(limit=3)
    while True:
        pages += 1
        assert len(page.items) <= 3
        seen += [r.id for r in page.items]
        if page.cursor is None:
            break
        page = await s.list_jobs(limit=3, cursor=page.cursor)
    assert seen == everything
    assert pages == 4  # 3 + 3 + 3 + 1: the last page has no cursor
    by_id = {r.id: r for r in (await s.list_jobs(limit=500)).items}
    assert set(by_id) == set(everything)
    for job_id in finished:  # items carry their runs, as get_job's do
        assert by_id[job_id] == await s.get_job(job_id)
        assert [r.outcome for r in by_id[job_id].runs] == [Outcome.SUCCEEDED]
    for job_id in live:
        assert by_id[job_id] == await s.get_job(job_id)


async def test_the_last_page_has_no_cursor_even_when_full(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    assert await s.list_jobs() == type(await s.list_jobs())((), None)
    await s.schedule_many("t", range(4))
    first = await s.list_jobs(limit=2)
    assert first.cursor is not None
    second = await s.list_jobs(limit=2, cursor=first.cursor)
    assert (len(second.items), second.cursor) == (2, None)
    one = await s.list_jobs(limit=4)
    assert (len(one.items), one.cursor) == (4, None)


async def test_list_jobs_filters_combine(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    async with every_state(s) as zoo:
        for state, job_id in zoo.ids.items():
            page = await s.list_jobs(state=state)
            assert [r.id for r in page.items] == [job_id], state
            assert [r.id for r in (await s.list_jobs(state=state.value)).items] == [job_id]
        extra = await s.schedule("bad", "f2", queue="idle")  # pending in "idle", type "bad"
        assert [r.id for r in (await s.list_jobs(queue="idle", state="pending")).items] == [
            extra,
            zoo.ids[JobState.PENDING],
        ]
        assert [r.id for r in (await s.list_jobs(queue="idle", type="bad")).items] == [extra]
        assert [r.id for r in (await s.list_jobs(type="bad")).items] == [extra, zoo.ids[JobState.FAILED]]
        assert [r.id for r in (await s.list_jobs(type="bad", state="failed")).items] == [
            zoo.ids[JobState.FAILED]
        ]
        assert (await s.list_jobs(type="bad", state="succeeded")).items == ()
        assert (await s.list_jobs(queue="elsewhere")).items == ()
        default = [r.id for r in (await s.list_jobs(queue="default")).items]
        assert default == sorted(
            [zoo.ids[JobState.RUNNING], zoo.ids[JobState.FAILED], zoo.ids[JobState.SUCCEEDED]], reverse=True
        )
        everything = (await s.list_jobs(limit=500)).items
        assert [r.id for r in everything] == sorted([*zoo.ids.values(), extra], reverse=True)


async def test_paging_while_jobs_end_and_arrive_never_repeats_or_skips(backend_scheduler: Scheduler) -> None:
    """Jobs end between pages (some above the cursor, some below it, by cancel() and by a
    worker) and new ones arrive: every job that existed when paging began is seen exactly
    once, and none of the newer ones."""
    s = backend_scheduler
    s.register("idle", lambda job: None, queue="idle")
    s.register("quick", lambda job: job.params)
    idle = await s.schedule_many("idle", range(60))
    quick = await s.schedule_many("quick", range(60))
    existing = sorted([*idle, *quick], reverse=True)
    seen: list[int] = []
    newer: list[int] = []
    to_cancel = sorted(idle)  # oldest first: mostly still ahead of the cursor
    async with running(s.worker(poll_interval=3600, concurrency=2)):
        page = await s.list_jobs(limit=10)
        while True:
            seen += [r.id for r in page.items]
            for _ in range(3):
                await s.cancel(to_cancel.pop(0))  # ends below the cursor: seen later, once
            await s.cancel(to_cancel.pop())  # ends above the cursor (already seen)
            newer += await s.schedule_many("idle", range(2))
            if page.cursor is None:
                break
            page = await s.list_jobs(limit=10, cursor=page.cursor)
        await ended(s, *quick)
    assert seen == existing
    assert not set(newer) & set(seen)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 0},
        {"limit": 501},
        {"limit": -1},
        {"limit": True},
        {"limit": "5"},
        {"state": "done"},
        {"cursor": "not-a-cursor"},
        {"cursor": "ajE6LTE"},  # a well-formed cursor for id -1
        {"queue": ""},
        {"type": ""},
    ],
)
async def test_list_jobs_refuses_bad_arguments(
    backend_scheduler: Scheduler, kwargs: dict[str, object]
) -> None:
    with pytest.raises(ConfigError):
        await backend_scheduler.list_jobs(**kwargs)  # type: ignore[arg-type]


async def test_list_jobs_limit_bounds_are_inclusive(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    ids = await s.schedule_many("t", range(3))
    one = await s.list_jobs(limit=1)
    assert [r.id for r in one.items] == [ids[-1]]
    assert one.cursor is not None
    assert [r.id for r in (await s.list_jobs(limit=500)).items] == ids[::-1]


async def test_queue_depth_and_stats_count_live_jobs(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    hold = Hold()
    s.register("hang", hold.run, queue="slow")
    s.register("t", lambda job: None, queue="q1")
    await s.schedule_many("t", range(3))
    await s.schedule("t", run_at=dt.timedelta(hours=1))
    await s.schedule("t", queue="q2")
    held = await s.schedule("t", queue="q2")
    await s.suspend(held)
    await s.schedule("t", queue="q2", depends_on=[held])
    assert await s.queue_depth() == 4
    assert await s.queue_depth("q1") == 3
    assert await s.queue_depth("nowhere") == 0
    with pytest.raises(ConfigError):
        await s.queue_depth("")
    async with running(s.worker(queues=["slow"], poll_interval=3600, shutdown_grace=0.01)):
        await s.schedule("hang")
        await wait(hold.started.done)
        stats = await s.stats()
        assert await s.queue_depth("slow") == 0  # running is not waiting
    assert stats.by_queue["q1"] == {
        JobState.PENDING: 3,
        JobState.SCHEDULED: 1,
        JobState.RUNNING: 0,
        JobState.SUSPENDED: 0,
        JobState.WAITING: 0,
    }
    assert stats.by_queue["q2"] == {
        JobState.PENDING: 1,
        JobState.SCHEDULED: 0,
        JobState.RUNNING: 0,
        JobState.SUSPENDED: 1,
        JobState.WAITING: 1,
    }
    assert stats.by_queue["slow"][JobState.RUNNING] == 1
    assert stats.by_type["t"] == {
        JobState.PENDING: 4,
        JobState.SCHEDULED: 1,
        JobState.RUNNING: 0,
        JobState.SUSPENDED: 1,
        JobState.WAITING: 1,
    }
    assert set(stats.by_type) == {"t", "hang"}
    assert await s.queue_depth("slow") == 1  # interrupted at shutdown: waiting again


async def test_stats_forget_ended_jobs(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    ids = await s.schedule_many("t", range(2))
    await s.cancel(ids[0])
    stats = await s.stats()
    assert stats.by_type["t"][JobState.PENDING] == 1
    await s.cancel(ids[1])
    stats = await s.stats()
    assert (stats.by_queue, stats.by_type) == ({}, {})


async def test_cancel_of_jobs_no_worker_holds(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    pending = await s.schedule("t", {"k": 1})
    scheduled = await s.schedule("t", run_at=dt.timedelta(hours=1))
    suspended = await s.schedule("t")
    await s.suspend(suspended)
    for job_id in (pending, scheduled, suspended):
        assert await s.cancel(job_id) is CancelResult.CANCELLED
        record = await s.get_job(job_id)
        assert (record.state, record.attempts, record.errors, record.last_error) == (
            JobState.CANCELLED,
            1,
            0,
            None,
        )
        [run] = record.runs
        assert (run.attempt, run.outcome, run.error, run.worker_id, run.retry_at, run.result) == (
            1,
            Outcome.CANCELLED,
            "cancelled before it ran",
            None,
            None,
            None,
        )
        assert record.finished_at == run.finished_at
        assert await s.cancel(job_id) is CancelResult.NOT_FOUND  # ended: nothing to do
        assert await s.get_job(job_id) == record
    assert (await s.get_job(pending)).params == {"k": 1}
    assert await s.cancel(999_999) is CancelResult.NOT_FOUND
    with pytest.raises(ConfigError):
        await s.cancel("1")  # type: ignore[arg-type]
    assert await s.queue_depth() == 0


async def test_cancel_of_a_running_job_tells_its_worker_and_the_run_ends_cancelled(
    backend_scheduler: Scheduler,
) -> None:
    s = backend_scheduler
    hold = Hold()
    s.register("hang", hold.run, retry=LinearBackoff(max_retries=5, base_delay=0))
    worker = s.worker(poll_interval=3600, heartbeat_interval=600, dead_after=1800)
    async with running(worker):
        job_id = await s.schedule("hang")
        await wait(hold.started.done)
        assert await s.cancel(job_id) is CancelResult.CANCELLING
        [record] = await ended(s, job_id)
    assert worker.signals.cancel_noted.count >= 1
    assert (record.state, record.attempts, record.errors) == (JobState.CANCELLED, 1, 0)
    [run] = record.runs  # not retried, whatever the filter
    assert (run.outcome, run.worker_id, run.retry_at, run.error) == (
        Outcome.CANCELLED,
        worker.id,
        None,
        "cancelled while running",
    )
    assert hold.started.calls == [job_id]


async def test_cancel_many_by_queue_and_by_type(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    for name in ("a", "b"):
        s.register(name, lambda job: None)
    a1 = await s.schedule("a", queue="q1")
    a2 = await s.schedule("a", queue="q2", run_at=dt.timedelta(hours=1))
    b1 = await s.schedule("b", queue="q1")
    b2 = await s.schedule("b", queue="q2")

    assert await s.cancel_many(queue="q1", type="a") == CancelCounts(cancelled=1, cancelling=0)
    assert (await s.get_job(a1)).state is JobState.CANCELLED
    assert await s.cancel_many(type="a") == CancelCounts(cancelled=1, cancelling=0)
    assert (await s.get_job(a2)).state is JobState.CANCELLED
    assert await s.cancel_many(queue="q2") == CancelCounts(cancelled=1, cancelling=0)
    assert [(await s.get_job(i)).state for i in (b1, b2)] == [JobState.PENDING, JobState.CANCELLED]
    live = (await s.stats()).by_queue
    assert sum(n for states in live.values() for n in states.values()) == 1  # the cancelled ones left
    assert await s.cancel_many(queue="nothing-here") == CancelCounts(cancelled=0, cancelling=0)
    assert await s.cancel_many(type="a") == CancelCounts(cancelled=0, cancelling=0)  # ended ones stay out
    [run] = (await s.get_job(a1)).runs
    assert (run.outcome, run.error, run.worker_id) == (Outcome.CANCELLED, "cancelled before it ran", None)
    assert await s.queue_depth() == 1


async def test_cancel_many_reaches_running_jobs(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    hold = Hold(runs=2)
    s.register("hang", hold.run)
    async with running(s.worker(poll_interval=3600)):
        ids = [await s.schedule("hang") for _ in range(2)]
        await wait(hold.started.done)
        later = await s.schedule("hang", run_at=dt.timedelta(hours=1))
        assert await s.cancel_many(type="hang") == CancelCounts(cancelled=1, cancelling=2)
        records = await ended(s, *ids)
    assert [(r.state, [x.outcome for x in r.runs]) for r in records] == [
        (JobState.CANCELLED, [Outcome.CANCELLED]),
        (JobState.CANCELLED, [Outcome.CANCELLED]),
    ]
    assert (await s.get_job(later)).state is JobState.CANCELLED


async def test_cancel_many_needs_a_good_filter(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    job_id = await s.schedule("t")
    with pytest.raises(ConfigError, match="queue= or type="):
        await s.cancel_many()
    with pytest.raises(ConfigError):
        await s.cancel_many(queue="")
    with pytest.raises(ConfigError):
        await s.cancel_many(type="")
    assert (await s.get_job(job_id)).state is JobState.PENDING


async def test_retry_of_a_failed_job_keeps_its_id_and_history_with_a_fresh_budget(
    backend_scheduler: Scheduler,
) -> None:
    """max_attempts=2: two runs, failed. retry(): runs 3 and 4 (numbering continues), again
    two runs of budget, appended to the same history."""
    s = backend_scheduler
    seen: list[tuple[int, int]] = []

    @s.job("t", retry=LinearBackoff(max_retries=5, base_delay=0), max_attempts=2)
    async def t(job: Job) -> None:
        seen.append((job.attempt, job.errors))
        raise ValueError(f"run {job.attempt}")

    job_id = await s.schedule("t", {"k": 1}, priority=3)
    async with running(s.worker(poll_interval=3600)):
        [first] = await ended(s, job_id)
        assert (first.state, first.attempts) == (JobState.FAILED, 2)
        await s.retry(job_id)
        again = await s.get_job(job_id)
        assert again.state in {JobState.PENDING, JobState.RUNNING}
        assert again.finished_at is None
        await logged(s, job_id, 4)
        [record] = await ended(s, job_id)
    assert record.id == job_id
    assert record.state is JobState.FAILED
    assert [r.attempt for r in record.runs] == [1, 2, 3, 4]
    assert record.runs[:2] == first.runs  # the old history stays as it was
    assert seen == [(1, 0), (2, 1), (3, 0), (4, 1)]  # errors start afresh too
    assert (record.params, record.priority, record.inserted_at, record.attempts) == (
        {"k": 1},
        3,
        first.inserted_at,
        4,
    )
    assert "ValueError: run 4" in (record.last_error or "")


async def test_retry_of_a_cancelled_job_runs_it(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    done = Counter(1)

    @s.job("t")
    async def t(job: Job) -> int:
        done.hit(job.attempt)
        return job.attempt

    job_id = await s.schedule("t", run_at=dt.timedelta(hours=1))
    await s.cancel(job_id)
    await s.retry(job_id)
    pending = await s.get_job(job_id)
    assert (pending.state, pending.attempts) == (JobState.PENDING, 1)  # due now, not at its old time
    assert pending.last_error is None  # the cancel's note is no error
    [record] = await run_until_ended(s, job_id)
    assert done.calls == [2]
    assert [(r.attempt, r.outcome) for r in record.runs] == [(1, Outcome.CANCELLED), (2, Outcome.SUCCEEDED)]
    assert (record.state, record.result) == (JobState.SUCCEEDED, 2)


async def test_retry_many_puts_back_the_failed_jobs_that_match(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("bad", raising(RuntimeError, "no"))
    s.register("good", lambda job: None)
    async with running(s.worker(poll_interval=3600)):
        failed = await s.schedule_many("bad", range(3))
        other_queue = await s.schedule("bad", queue="elsewhere")
        ok = await s.schedule("good")
        await ended(s, *failed, ok)
    cancelled = await s.schedule("bad", run_at=dt.timedelta(hours=1))
    await s.cancel(cancelled)
    assert await s.retry_many(type="good") == []
    assert await s.retry_many(queue="default", type="bad") == sorted(failed)  # failed ones only
    assert [(await s.get_job(i)).state for i in failed] == [JobState.PENDING] * 3
    assert (await s.get_job(cancelled)).state is JobState.CANCELLED
    assert (await s.get_job(ok)).state is JobState.SUCCEEDED
    assert (await s.get_job(other_queue)).state is JobState.PENDING  # its own worker-less queue
    assert await s.retry_many(type="bad") == []  # live now: nothing to do twice
    with pytest.raises(ConfigError):
        await s.retry_many(queue="")


async def test_retry_many_without_filters_takes_every_failed_job(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("bad", raising(RuntimeError, "no"), queue="a")
    async with running(s.worker(queues=["a", "b"], poll_interval=3600)):
        ids = [await s.schedule("bad"), await s.schedule("bad", queue="b")]
        await ended(s, *ids)
    assert await s.retry_many() == ids
    assert [(await s.get_job(i)).state for i in ids] == [JobState.PENDING] * 2


async def test_delete_removes_a_job_no_worker_holds_and_keeps_logged_runs(
    backend_scheduler: Scheduler,
) -> None:
    s = backend_scheduler
    s.register("t", raising(RuntimeError, "later"), retry=LinearBackoff(max_retries=3, base_delay=3600))
    never_ran = await s.schedule("t", run_at=dt.timedelta(hours=1), queue="idle")
    suspended = await s.schedule("t", queue="idle")
    await s.suspend(suspended)
    for job_id in (never_ran, suspended):
        await s.delete(job_id)
        with pytest.raises(JobNotFound):  # it never ran: nothing is left of it
            await s.get_job(job_id)
        with pytest.raises(JobNotFound):
            await s.delete(job_id)
    async with running(s.worker(poll_interval=3600)):
        ran = await s.schedule("t")
        await logged(s, ran, 1)
    assert (await s.get_job(ran)).state is JobState.SCHEDULED  # put back for a retry in an hour
    await s.delete(ran)
    # Its last run put it back: after delete() nothing says how it ended. Not found, not
    # listed, not revived by retry_many().
    with pytest.raises(JobNotFound):
        await s.get_job(ran)
    assert (await s.list_jobs()).items == ()
    assert await s.retry_many(type="t") == []
    assert await s.stats() == type(await s.stats())({}, {})


async def test_suspend_and_resume_a_pending_job(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    done = Counter(3)

    @s.job("t")
    async def t(job: Job) -> None:
        done.hit(job.id)

    held = await s.schedule("t")
    await s.suspend(held)
    record = await s.get_job(held)
    assert (record.state, record.suspend_requested, record.runs) == (JobState.SUSPENDED, False, ())
    assert await s.queue_depth() == 0
    async with running(s.worker(poll_interval=3600)):
        # Two later jobs run; the older, suspended one would be claimed first if it could be.
        others = [await s.schedule("t"), await s.schedule("t")]
        await ended(s, *others)
        assert sorted(done.calls) == others
        assert (await s.stats()).by_queue["default"][JobState.SUSPENDED] == 1
        await s.resume(held)  # its queue is told: the worker picks it up
        await wait(done.done)
        [record] = await ended(s, held)
    assert done.calls[2] == held
    assert (record.state, [r.outcome for r in record.runs]) == (JobState.SUCCEEDED, [Outcome.SUCCEEDED])


async def test_a_resumed_job_is_due_at_its_run_at(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    now = await s.schedule("t")
    await s.suspend(now)
    assert await s.queue_depth() == 0
    await s.resume(now)
    assert (await s.get_job(now)).state is JobState.PENDING
    assert await s.queue_depth() == 1
    later = await s.schedule("t", run_at=dt.timedelta(hours=1))
    before = await s.get_job(later)
    await s.suspend(later)
    assert (await s.get_job(later)).state is JobState.SUSPENDED
    await s.resume(later)
    after = await s.get_job(later)
    assert (after.state, after.run_at) == (JobState.SCHEDULED, before.run_at)


async def test_suspended_jobs_can_be_cancelled_or_deleted(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    a, b = await s.schedule("t"), await s.schedule("t")
    await s.suspend(a)
    await s.suspend(b)
    assert await s.cancel(a) is CancelResult.CANCELLED
    assert (await s.get_job(a)).state is JobState.CANCELLED
    await s.delete(b)
    with pytest.raises(JobNotFound):
        await s.get_job(b)


# Every call on a job in a state that does not allow it: (action, state).
_INVALID = [
    *[("retry", st) for st in (*_LIVE, JobState.SUCCEEDED)],
    *[("delete", st) for st in (JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)],
    *[
        ("suspend", st)
        for st in (
            JobState.RUNNING,
            JobState.SUSPENDED,
            JobState.WAITING,
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.CANCELLED,
        )
    ],
    *[("resume", st) for st in JobState if st is not JobState.SUSPENDED],
]


async def test_invalid_transitions_raise_and_change_nothing(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    async with every_state(s) as zoo:
        before = {st: await s.get_job(job_id) for st, job_id in zoo.ids.items()}
        stats = await s.stats()
        for action, state in _INVALID:
            job_id = zoo.ids[state]
            with pytest.raises(
                InvalidStateError, match=f"cannot {action} job {job_id}: job {job_id} is {state}"
            ) as info:
                await getattr(s, action)(job_id)
            assert (info.value.job_id, info.value.state) == (job_id, state.value)
            assert isinstance(info.value, ValueError)
        for state, job_id in zoo.ids.items():
            assert await s.get_job(job_id) == before[state], state
        assert await s.stats() == stats
        # cancel() of an ended job is no error: NOT_FOUND, and nothing changes either.
        for state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
            assert await s.cancel(zoo.ids[state]) is CancelResult.NOT_FOUND
            assert await s.get_job(zoo.ids[state]) == before[state]


@pytest.mark.parametrize("action", ["retry", "delete", "suspend", "resume"])
async def test_transitions_of_an_unknown_or_bad_id(backend_scheduler: Scheduler, action: str) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    with pytest.raises(JobNotFound, match="job 999999 not found"):
        await getattr(s, action)(999_999)
    with pytest.raises(ConfigError):
        await getattr(s, action)("1")


async def test_wait_returns_at_once_for_a_job_that_already_ended(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: 5)
    async with running(s.worker(poll_interval=3600)):
        job_id = await s.schedule("t")
        [done] = await ended(s, job_id)
    record = await s.wait(job_id, timeout=30)
    assert record == done
    assert (record.id, record.state, record.result) == (job_id, JobState.SUCCEEDED, 5)


async def test_wait_is_woken_when_a_running_job_ends(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    hold = Hold(result="ok")
    s.register("t", hold.run)
    async with running(s.worker(poll_interval=3600)):
        job_id = await s.schedule("t")
        await wait(hold.started.done)
        async with wait_in_background(s, job_id) as result:
            assert result == []  # still running: the waiter waits
            hold.release()
    assert [(r.id, r.state, r.result) for r in result] == [(job_id, JobState.SUCCEEDED, "ok")]


async def test_wait_goes_on_through_retries_until_the_final_run(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    gate = anyio.Event()

    @s.job("t", retry=LinearBackoff(max_retries=3, base_delay=0))
    async def t(job: Job) -> str:
        await gate.wait()
        if job.attempt < 3:
            raise RuntimeError("again")
        return "at last"

    async with running(s.worker(poll_interval=3600)):
        job_id = await s.schedule("t")
        async with wait_in_background(s, job_id) as result:
            gate.set()
    [record] = result
    assert (record.state, record.result, len(record.runs)) == (JobState.SUCCEEDED, "at last", 3)


async def test_wait_times_out_and_the_job_goes_on(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    later = await s.schedule("t", run_at=dt.timedelta(hours=1))
    with pytest.raises(WaitTimeoutError, match=f"job {later} did not end within 0.05 s") as info:
        await s.wait(later, timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert (await s.get_job(later)).state is JobState.SCHEDULED


async def test_wait_of_an_unknown_or_bad_id(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    with pytest.raises(JobNotFound):
        await s.wait(999_999, timeout=5)
    with pytest.raises(ConfigError):
        await s.wait("1", timeout=5)  # type: ignore[arg-type]


async def test_wait_sees_a_cancel_and_a_delete(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    cancelled = await s.schedule("t", run_at=dt.timedelta(hours=1))
    deleted = await s.schedule("t", run_at=dt.timedelta(hours=1))
    states: list[JobState] = []
    errors: list[BaseException] = []

    async def wait_cancelled() -> None:
        states.append((await s.wait(cancelled, timeout=30)).state)

    async def wait_deleted() -> None:
        try:
            await s.wait(deleted, timeout=30)
        except JobNotFound as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_cancelled)
        tg.start_soon(wait_deleted)
        await anyio.wait_all_tasks_blocked()
        assert await s.cancel(cancelled) is CancelResult.CANCELLED
        await s.delete(deleted)
    assert states == [JobState.CANCELLED]
    assert len(errors) == 1
