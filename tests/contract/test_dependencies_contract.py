"""schedule(..., depends_on=[...]) on each backend: waiting, release on success, cancel otherwise."""

from __future__ import annotations

import datetime as dt

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
)
from tests._support import Counter, running, wait
from tests.contract._helpers import ended, noting, raising, run_until_ended, state_of, wait_in_background


async def test_a_chain_runs_in_order_and_is_released_by_notification(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    order = Counter(3)
    s.register("step", noting(order))
    a = await s.schedule("step", "a")
    b = await s.schedule("step", "b", depends_on=[a])
    c = await s.schedule("step", "c", depends_on=[b])

    rec_b = await s.get_job(b)
    assert (rec_b.state, rec_b.attempts, rec_b.runs) == (JobState.WAITING, 0, ())
    assert (rec_b.depends_on, rec_b.dependents) == ((a,), (c,))
    assert (await s.get_job(a)).dependents == (b,)
    assert (await s.get_job(a)).depends_on == ()
    stats = await s.stats()
    assert stats.by_type["step"][JobState.WAITING] == 2
    assert stats.by_type["step"][JobState.PENDING] == 1
    assert await s.queue_depth() == 1
    assert [r.id for r in (await s.list_jobs(state="waiting")).items] == [c, b]

    # A poll interval far beyond the test's wait: only the notifications can release b and c.
    records = await run_until_ended(s, a, b, c)
    assert order.calls == ["a", "b", "c"]
    assert all(r.state is JobState.SUCCEEDED for r in records)
    assert records[1].started_at is not None
    assert records[0].finished_at is not None
    assert records[1].started_at >= records[0].finished_at
    assert (records[2].depends_on, records[0].dependents) == ((b,), (b,))  # edges outlive the jobs


async def test_a_diamond_runs_the_join_once_after_both_branches(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    seen = Counter(4)
    s.register("node", noting(seen))
    a = await s.schedule("node", "a")
    b = await s.schedule("node", "b", depends_on=[a])
    c = await s.schedule("node", "c", depends_on=[a])
    d = await s.schedule("node", "d", depends_on=[c, b, b])  # repeats count once
    assert (await s.get_job(d)).depends_on == (b, c)
    assert (await s.get_job(a)).dependents == (b, c)

    records = await run_until_ended(s, a, b, c, d, concurrency=4)
    assert seen.calls[0] == "a"
    assert sorted(seen.calls[1:3]) == ["b", "c"]
    assert seen.calls[3:] == ["d"]
    assert [r.state for r in records] == [JobState.SUCCEEDED] * 4
    assert len(records[3].runs) == 1


async def test_a_dependent_waits_through_its_dependency_s_retries(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    ran: list[tuple[str, int]] = []

    @s.job("flaky", retry=LinearBackoff(max_retries=3, base_delay=0))
    async def flaky(job: Job) -> None:
        ran.append(("flaky", job.attempt))
        if job.attempt < 3:
            raise RuntimeError("not yet")

    @s.job("after")
    async def after(job: Job) -> None:
        ran.append(("after", job.attempt))

    a = await s.schedule("flaky")
    b = await s.schedule("after", depends_on=[a])
    records = await run_until_ended(s, a, b)
    assert ran == [("flaky", 1), ("flaky", 2), ("flaky", 3), ("after", 1)]
    assert [r.state for r in records] == [JobState.SUCCEEDED] * 2


async def test_a_skipped_dependency_counts_as_succeeded(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("skip", raising(Skip, "nothing to do"))
    s.register("after", lambda job: "ran")
    a = await s.schedule("skip")
    b = await s.schedule("after", depends_on=[a])
    records = await run_until_ended(s, a, b)
    assert [(r.state, r.result) for r in records] == [(JobState.SUCCEEDED, None), (JobState.SUCCEEDED, "ran")]


async def test_a_released_dependent_keeps_its_own_run_at(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    a = await s.schedule("t")
    later = await s.schedule("t", depends_on=[a], run_at=dt.timedelta(hours=1))
    now = await s.schedule("t", depends_on=[a])
    await run_until_ended(s, a, now)
    record = await s.get_job(later)
    assert record.state is JobState.SCHEDULED
    assert record.run_at - record.inserted_at == dt.timedelta(hours=1)


async def test_a_failed_dependency_cancels_its_dependents_transitively(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    ran = Counter(1)
    s.register("ok", noting(ran))
    s.register("boom", raising(RuntimeError, "boom"))
    a = await s.schedule("boom", None)
    other = await s.schedule("ok", "other")
    await s.suspend(other)  # d also waits on it: a's failure must end d anyway
    b = await s.schedule("ok", "b", depends_on=[a])
    c = await s.schedule("ok", "c", depends_on=[b])
    d = await s.schedule("ok", "d", depends_on=[a, other])
    e = await s.schedule("ok", "e", depends_on=[other])  # not downstream of a

    async with wait_in_background(s, c) as waited:
        records = await run_until_ended(s, a, b, c, d)
    assert [r.state for r in waited] == [JobState.CANCELLED]
    assert ran.calls == []
    ra, rb, rc, rd = records
    assert ra.state is JobState.FAILED
    assert [r.state for r in (rb, rc, rd)] == [JobState.CANCELLED] * 3
    for record in (rb, rc, rd):
        [run] = record.runs
        assert (run.attempt, run.outcome, run.worker_id, run.retry_at) == (1, Outcome.CANCELLED, None, None)
        assert (record.attempts, record.errors) == (1, 0)
    assert rb.runs[-1].error == f"dependency {a} failed"
    assert rc.runs[-1].error == f"dependency {b} was cancelled (dependency {a} failed)"
    assert rd.runs[-1].error == f"dependency {a} failed"
    assert await state_of(s, e) is JobState.WAITING
    assert await state_of(s, other) is JobState.SUSPENDED
    assert (rb.depends_on, rb.dependents, rc.depends_on) == ((a,), (c,), (b,))


async def test_a_job_reached_by_several_cancelled_paths_names_its_lowest_numbered_dependency(
    backend_scheduler: Scheduler,
) -> None:
    """x waits on c (two steps below a) and on d (one step below a): the note names the
    lower id, c, whichever path is shorter."""
    s = backend_scheduler
    s.register("boom", raising(RuntimeError, "boom"))
    s.register("ok", lambda job: None)
    a = await s.schedule("boom")
    b = await s.schedule("ok", depends_on=[a])
    c = await s.schedule("ok", depends_on=[b])
    d = await s.schedule("ok", depends_on=[a])
    x = await s.schedule("ok", depends_on=[d, c])
    records = await run_until_ended(s, a, b, c, d, x)
    notes = [r.runs[-1].error for r in records[1:]]
    assert notes == [
        f"dependency {a} failed",
        f"dependency {b} was cancelled (dependency {a} failed)",
        f"dependency {a} failed",
        f"dependency {c} was cancelled (dependency {a} failed)",
    ]


async def test_a_cancel_verdict_of_a_dependency_cancels_its_dependents(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("stop", raising(Cancel, "not needed"))
    s.register("ok", lambda job: None)
    a = await s.schedule("stop")
    b = await s.schedule("ok", depends_on=[a])
    ra, rb = await run_until_ended(s, a, b)
    assert (ra.state, rb.state) == (JobState.CANCELLED, JobState.CANCELLED)
    assert rb.runs[-1].error == f"dependency {a} was cancelled"


async def test_cancel_and_delete_of_a_dependency_cancel_its_dependents(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    a = await s.schedule("t", None)
    b = await s.schedule("t", None, depends_on=[a])
    x = await s.schedule("t", None)
    y = await s.schedule("t", None, depends_on=[x])
    z = await s.schedule("t", None, depends_on=[y])

    assert await s.cancel(a) is CancelResult.CANCELLED
    rb = await s.get_job(b)
    assert rb.state is JobState.CANCELLED
    assert rb.runs[-1].error == f"dependency {a} was cancelled"

    await s.delete(x)
    ry, rz = await s.get_job(y), await s.get_job(z)
    assert (ry.state, rz.state) == (JobState.CANCELLED, JobState.CANCELLED)
    assert ry.runs[-1].error == f"dependency {x} was deleted"
    assert rz.runs[-1].error == f"dependency {y} was cancelled (dependency {x} was deleted)"
    with pytest.raises(JobNotFound):
        await s.get_job(x)  # deleted before any run: nothing logged
    assert (await s.stats()).by_type == {}


async def test_cancel_many_cancels_dependents_of_other_filters_too(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("a", lambda job: None)
    s.register("b", lambda job: None)
    first = await s.schedule("a")
    second = await s.schedule("b", depends_on=[first])
    assert (await s.cancel_many(type="a")).cancelled == 1
    record = await s.get_job(second)
    assert (record.state, record.runs[-1].error) == (JobState.CANCELLED, f"dependency {first} was cancelled")


async def test_cancel_many_ends_a_job_and_its_dependents_in_one_go(backend_scheduler: Scheduler) -> None:
    """cancel_many() of a chain a <- b <- c <- d where a and c match: a and c end as the call
    says ("cancelled before it ran"), each counted once; b and d, which do not match, are
    cancelled because of the job they wait on, which is the root of their note."""
    s = backend_scheduler
    s.register("t", lambda job: None)
    s.register("u", lambda job: None)
    a = await s.schedule("t")
    await s.suspend(a)
    b = await s.schedule("u", depends_on=[a])
    c = await s.schedule("t", depends_on=[b])
    d = await s.schedule("u", depends_on=[c])
    assert await s.cancel_many(type="t") == CancelCounts(cancelled=2, cancelling=0)
    records = [await s.get_job(i) for i in (a, b, c, d)]
    assert [r.state for r in records] == [JobState.CANCELLED] * 4
    assert [[(run.attempt, run.error) for run in r.runs] for r in records] == [
        [(1, "cancelled before it ran")],
        [(1, f"dependency {a} was cancelled")],
        [(1, "cancelled before it ran")],
        [(1, f"dependency {c} was cancelled")],
    ]
    # Matching the whole chain: every job is the call's own, none is cancelled twice.
    e = await s.schedule("t")
    await s.suspend(e)
    f = await s.schedule("t", depends_on=[e])
    g = await s.schedule("t", depends_on=[f])
    assert await s.cancel_many(type="t") == CancelCounts(cancelled=3, cancelling=0)
    for job_id in (e, f, g):
        assert [(run.attempt, run.error) for run in (await s.get_job(job_id)).runs] == [
            (1, "cancelled before it ran")
        ]


async def test_cancelling_a_waiting_job_cancels_those_waiting_on_it(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    a = await s.schedule("t", run_at=dt.timedelta(hours=1))
    b = await s.schedule("t", depends_on=[a])
    c = await s.schedule("t", depends_on=[b])
    d = await s.schedule("t", depends_on=[c])
    assert await s.cancel(b) is CancelResult.CANCELLED
    rb, rc, rd = [await s.get_job(i) for i in (b, c, d)]
    assert [r.runs[-1].error for r in (rb, rc, rd)] == [
        "cancelled before it ran",
        f"dependency {b} was cancelled",
        f"dependency {c} was cancelled (dependency {b} was cancelled)",
    ]
    assert await state_of(s, a) is JobState.SCHEDULED


async def test_cancelling_or_deleting_a_waiting_job_leaves_its_dependency_alone(
    backend_scheduler: Scheduler,
) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    a = await s.schedule("t", None)
    b = await s.schedule("t", None, depends_on=[a])
    c = await s.schedule("t", None, depends_on=[a])
    assert await s.cancel(b) is CancelResult.CANCELLED
    [run] = (await s.get_job(b)).runs
    assert (run.outcome, run.error) == (Outcome.CANCELLED, "cancelled before it ran")
    await s.delete(c)
    [ra] = await run_until_ended(s, a)
    assert ra.state is JobState.SUCCEEDED
    assert ra.dependents == (b, c)  # edges stay
    assert await state_of(s, b) is JobState.CANCELLED
    with pytest.raises(JobNotFound):
        await s.get_job(c)


async def test_a_succeeded_dependency_counts_as_met(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    done = Counter(2)
    s.register("t", noting(done))
    a = await s.schedule("t", None)
    async with running(s.worker(poll_interval=3600)):
        await ended(s, a)
        b = await s.schedule("t", None, depends_on=[a])
        assert (await s.get_job(b)).depends_on == (a,)
        await wait(done.done)
        [rb] = await ended(s, b)
    assert rb.state is JobState.SUCCEEDED
    assert (await s.get_job(a)).dependents == (b,)


async def test_live_dependencies_in_any_live_state_make_the_job_wait(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    pending = await s.schedule("t")
    scheduled = await s.schedule("t", run_at=dt.timedelta(hours=1))
    suspended = await s.schedule("t")
    await s.suspend(suspended)
    waiting = await s.schedule("t", depends_on=[pending])
    job = await s.schedule("t", depends_on=[pending, scheduled, suspended, waiting])
    record = await s.get_job(job)
    assert (record.state, record.depends_on) == (JobState.WAITING, (pending, scheduled, suspended, waiting))


async def test_bad_dependencies_are_refused_and_write_nothing(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", raising(RuntimeError, "no"))
    live = await s.schedule("t", None)
    await s.suspend(live)
    failed = await s.schedule("t", None)
    cancelled = await s.schedule("t", None)
    await s.cancel(cancelled)
    await run_until_ended(s, failed)
    before = await s.list_jobs()
    stats = await s.stats()

    with pytest.raises(JobNotFound, match=r"dependency 999999 not found"):
        await s.schedule("t", None, depends_on=[live, 999999])
    with pytest.raises(
        InvalidStateError, match=rf"cannot depend on job {failed}: job {failed} is failed"
    ) as info:
        await s.schedule("t", None, depends_on=[live, failed])
    assert (info.value.job_id, info.value.state) == (failed, "failed")
    with pytest.raises(
        InvalidStateError, match=rf"cannot depend on job {cancelled}: job {cancelled} is cancelled"
    ):
        await s.schedule("t", None, depends_on=[cancelled])
    with pytest.raises(InvalidStateError, match=rf"job {failed} is failed"):  # the lower id is named
        await s.schedule("t", None, depends_on=[cancelled, failed])
    for bad in ("12", [True], [0], [-3], [1.5], 7, [None]):
        with pytest.raises(ConfigError, match="depends_on"):
            await s.schedule("t", None, depends_on=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="at most 1000"):
        await s.schedule("t", None, depends_on=range(1, 1002))
    with pytest.raises(ConfigError, match="cannot be combined"):
        await s.schedule("t", None, depends_on=[live], unique_key="k")

    assert await s.list_jobs() == before
    assert await s.stats() == stats
    # The refused calls left no edge: the live dependency has no dependents, so resuming
    # it and letting it fail cancels nothing.
    assert (await s.get_job(live)).dependents == ()


async def test_an_empty_depends_on_is_a_plain_job(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    job_id = await s.schedule("t", None, depends_on=[])
    record = await s.get_job(job_id)
    assert (record.state, record.depends_on) == (JobState.PENDING, ())


async def test_waiting_jobs_cannot_be_suspended_and_are_cancelled_by_cancel_many(
    backend_scheduler: Scheduler,
) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    a = await s.schedule("t", None)
    await s.suspend(a)
    b = await s.schedule("t", None, depends_on=[a])
    with pytest.raises(InvalidStateError, match=rf"job {b} is waiting"):
        await s.suspend(b)
    with pytest.raises(InvalidStateError, match=rf"job {b} is waiting"):
        await s.resume(b)
    assert await state_of(s, b) is JobState.WAITING
    counts = await s.cancel_many(type="t")
    assert (counts.cancelled, counts.cancelling) == (2, 0)
    assert await state_of(s, b) is JobState.CANCELLED


async def test_a_retried_dependent_does_not_wait_again(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: "ran")
    a = await s.schedule("t", run_at=dt.timedelta(hours=1))
    b = await s.schedule("t", depends_on=[a])
    await s.cancel(a)
    assert await state_of(s, b) is JobState.CANCELLED
    await s.retry(b)
    assert await state_of(s, b) is JobState.PENDING  # its dependency was cancelled; it runs anyway
    [rb] = await run_until_ended(s, b)
    assert (rb.state, rb.result, [r.outcome for r in rb.runs]) == (
        JobState.SUCCEEDED,
        "ran",
        [Outcome.CANCELLED, Outcome.SUCCEEDED],
    )
    assert await state_of(s, a) is JobState.CANCELLED
