"""Unique keys on each backend: one job per key while it lives, and the key's life after it ends."""

from __future__ import annotations

import datetime as dt

import pytest

from pgqueue import Cancel, CancelResult, ConfigError, Job, JobNotFound, JobState, LinearBackoff, Scheduler
from tests._support import running, wait
from tests.contract._helpers import Hold, ended, logged, raising, run_until_ended


async def test_one_key_one_job(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    s.register("other", lambda job: None)
    first = await s.schedule("t", {"i": 1}, unique_key="report:2026-12-01")
    assert first.inserted
    again = await s.schedule("t", {"i": 2}, unique_key="report:2026-12-01", priority=-5)
    assert (again, again.inserted) == (first, False)
    # The key is the key, whatever the type: the holder is returned as found.
    other = await s.schedule("other", unique_key="report:2026-12-01")
    assert (other, other.inserted) == (first, False)
    record = await s.get_job(first)
    assert (record.params, record.priority, record.type) == ({"i": 1}, 0, "t")  # the holder, unchanged
    assert (await s.get_job_by_key("report:2026-12-01")) == record
    assert [r.id for r in (await s.list_jobs()).items] == [first]
    different = await s.schedule("t", unique_key="report:2026-12-02")
    assert different.inserted
    assert different != first
    plain = await s.schedule("t")
    assert plain.inserted
    assert isinstance(plain, int)


async def test_get_job_by_key_of_a_key_nobody_holds(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    with pytest.raises(JobNotFound, match="no job holds the unique key 'x'"):
        await s.get_job_by_key("x")
    with pytest.raises(ConfigError):
        await s.get_job_by_key("")


async def test_every_live_state_holds_the_key(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    hold = Hold()
    s.register("t", hold.run)
    scheduled = await s.schedule("t", unique_key="later", run_at=dt.timedelta(hours=1))
    suspended = await s.schedule("t", unique_key="held", run_at=dt.timedelta(hours=1))
    await s.suspend(suspended)
    for key, holder in (("later", scheduled), ("held", suspended)):
        again = await s.schedule("t", unique_key=key)
        assert (again, again.inserted) == (holder, False)
    async with running(s.worker(poll_interval=3600)):
        busy = await s.schedule("t", unique_key="busy")
        await wait(hold.started.done)
        assert (await s.get_job(busy)).state is JobState.RUNNING
        again = await s.schedule("t", unique_key="busy")
        assert (again, again.inserted) == (busy, False)
        assert (await s.get_job_by_key("busy")).id == busy
        hold.release()
        await ended(s, busy)
    # Success with the default unique_for=0: the key is free at once.
    fresh = await s.schedule("t", unique_key="busy", run_at=dt.timedelta(hours=1))
    assert fresh.inserted
    assert fresh != busy


async def test_a_job_put_back_for_a_retry_still_holds_its_key(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", raising(RuntimeError, "later"), retry=LinearBackoff(max_retries=3, base_delay=3600))
    job_id = await s.schedule("t", unique_key="k")
    async with running(s.worker(poll_interval=3600)):
        await logged(s, job_id, 1)
    assert (await s.get_job(job_id)).state is JobState.SCHEDULED
    again = await s.schedule("t", unique_key="k")
    assert (again, again.inserted) == (job_id, False)


async def test_the_key_is_freed_when_the_job_ends_unless_kept(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("free", lambda job: None)
    s.register("kept", lambda job: "done", unique_for=dt.timedelta(hours=1))

    async with running(s.worker(poll_interval=3600)):
        free = await s.schedule("free", unique_key="f")
        kept = await s.schedule("kept", unique_key="k")
        await ended(s, free, kept)
    with pytest.raises(JobNotFound):
        await s.get_job_by_key("f")
    again_free = await s.schedule("free", unique_key="f")
    assert again_free.inserted
    assert again_free != free
    again_kept = await s.schedule("kept", unique_key="k")
    assert (again_kept, again_kept.inserted) == (kept, False)  # held for an hour after success
    record = await s.get_job_by_key("k")
    assert (record.id, record.state, record.result) == (kept, JobState.SUCCEEDED, "done")


async def test_a_failed_or_cancelled_job_frees_its_key_by_default(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler

    @s.job("t", unique_for=3600)
    async def t(job: Job) -> None:
        raise Cancel("not today") if job.params == "cancel" else RuntimeError("no")

    async with running(s.worker(poll_interval=3600)):
        failed = await s.schedule("t", "fail", unique_key="a")
        cancelled = await s.schedule("t", "cancel", unique_key="b")
        rf, rc = await ended(s, failed, cancelled)
    assert (rf.state, rc.state) == (JobState.FAILED, JobState.CANCELLED)
    for key in ("a", "b"):
        with pytest.raises(JobNotFound):
            await s.get_job_by_key(key)
        assert (await s.schedule("t", unique_key=key, run_at=dt.timedelta(hours=1))).inserted
    waiting = await s.schedule("t", unique_key="c", run_at=dt.timedelta(hours=1))
    assert await s.cancel(waiting) is CancelResult.CANCELLED
    again = await s.schedule("t", unique_key="c")
    assert again.inserted
    assert again != waiting


async def test_a_type_can_keep_the_key_after_a_failure_or_a_cancel(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler

    @s.job("t", unique_for=3600, unique_kept_after=["failed", "cancelled"])
    async def t(job: Job) -> None:
        raise Cancel("not today") if job.params == "cancel" else RuntimeError("no")

    @s.job("ok", unique_for=3600, unique_kept_after=["failed"])
    async def ok(job: Job) -> None:
        return None

    async with running(s.worker(poll_interval=3600)):
        failed = await s.schedule("t", "fail", unique_key="a")
        cancelled = await s.schedule("t", "cancel", unique_key="b")
        succeeded = await s.schedule("ok", unique_key="d")
        await ended(s, failed, cancelled, succeeded)
    again = await s.schedule("t", unique_key="a")
    assert (again, again.inserted) == (failed, False)
    again = await s.schedule("t", unique_key="b")
    assert (again, again.inserted) == (cancelled, False)
    assert (await s.get_job_by_key("a")).state is JobState.FAILED
    assert (await s.get_job_by_key("b")).state is JobState.CANCELLED
    # "ok" keeps its key after a failure only: its success frees it.
    fresh = await s.schedule("ok", unique_key="d", run_at=dt.timedelta(hours=1))
    assert fresh.inserted
    assert fresh != succeeded
    # A cancel that reaches a job before any worker keeps the key too.
    waiting = await s.schedule("t", unique_key="c", run_at=dt.timedelta(hours=1))
    await s.cancel(waiting)
    again = await s.schedule("t", unique_key="c")
    assert (again, again.inserted) == (waiting, False)
    # cancel_many is a cancel as well.
    many = await s.schedule("t", unique_key="e", run_at=dt.timedelta(hours=1))
    assert (await s.cancel_many(type="t")).cancelled == 1
    assert (await s.get_job_by_key("e")).id == many
    info = {i.name: i for i in s.job_types()}["t"]
    assert (info.unique_for, info.unique_kept_after) == (3600.0, ("failed", "cancelled"))


async def test_a_deleted_job_frees_its_key(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None, unique_for=3600, unique_kept_after=["succeeded", "failed", "cancelled"])
    first = await s.schedule("t", unique_key="k", run_at=dt.timedelta(hours=1))
    await s.delete(first)
    with pytest.raises(JobNotFound):
        await s.get_job_by_key("k")
    second = await s.schedule("t", unique_key="k")
    assert second.inserted
    assert second != first


async def test_a_retried_job_no_longer_holds_a_key_that_was_freed(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", raising(RuntimeError, "no"), unique_for=3600)  # kept after a success only
    job_id = await s.schedule("t", unique_key="k")
    await run_until_ended(s, job_id)
    await s.retry(job_id)
    assert (await s.get_job(job_id)).state is JobState.PENDING
    with pytest.raises(JobNotFound):
        await s.get_job_by_key("k")
    other = await s.schedule("t", unique_key="k")
    assert other.inserted
    assert other != job_id


async def test_a_retried_job_is_still_found_by_a_key_kept_after_its_failure(
    backend_scheduler: Scheduler,
) -> None:
    """The key kept after the failure (unique_kept_after) still names the job once retry()
    put it back: the kept key lasts its unique_for, whatever became of the job."""
    s = backend_scheduler
    s.register("t", raising(RuntimeError, "no"), unique_for=3600, unique_kept_after=["failed"])
    job_id = await s.schedule("t", unique_key="k")
    await run_until_ended(s, job_id)
    await s.retry(job_id)
    again = await s.schedule("t", unique_key="k")
    assert (again, again.inserted) == (job_id, False)
    assert (await s.get_job_by_key("k")).state is JobState.PENDING


async def test_unique_key_cannot_be_empty_and_writes_nothing(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    with pytest.raises(ConfigError):
        await s.schedule("t", unique_key="")
    with pytest.raises(ConfigError):
        await s.schedule("t", unique_key="a\x00b")
    assert (await s.list_jobs()).items == ()


async def test_an_empty_unique_kept_after_frees_the_key_after_a_success(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler

    @s.job("t", unique_for=3600, unique_kept_after=())
    async def t(job: Job) -> None:
        return None

    first = await s.schedule("t", unique_key="k")
    await run_until_ended(s, first)
    again = await s.schedule("t", unique_key="k")
    assert again.inserted
    assert again != first
