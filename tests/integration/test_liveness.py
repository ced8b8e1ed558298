"""Liveness: heartbeats and reaping, fencing, lost leases, shutdown, timeouts, cancel."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any, TypedDict

import anyio
import asyncpg
import pytest

from pgqueue import CancelResult, Job, JobState, LinearBackoff, Outcome, Scheduler
from pgqueue.store import FlushBatch
from pgqueue.worker.fetcher import EMPTY_CLAIM_REARM_S
from tests._support import (
    Counter,
    claim_records,
    fired,
    hot_count,
    hot_empty,
    pg_store,
    running,
    runs,
    until,
    wait,
)

pytestmark = pytest.mark.pg


class _Liveness(TypedDict):
    heartbeat_interval: float
    dead_after: float


FAST: _Liveness = {"heartbeat_interval": 0.05, "dead_after": 0.3}  # reaping within a fraction of a second


async def _dead_worker_holding(scheduler: Scheduler, db: asyncpg.Connection, n: int) -> tuple[int, list[int]]:
    """A worker row that claimed ``n`` jobs and then went silent (its heartbeat is old)."""
    store = await pg_store(scheduler)
    wid, _server_time = await store.worker_register(["default"])
    rows = await claim_records(store, ["default"], n, wid)
    await db.execute(
        f"UPDATE \"{scheduler.schema}\".workers SET heartbeat = now() - interval '1 hour' WHERE id = $1", wid
    )
    return wid, [r["id"] for r in rows]


async def test_a_live_worker_reaps_a_dead_one_and_reruns_its_jobs(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    done = Counter(3)

    @scheduler.job("work")
    async def work(job: Job) -> None:
        done.hit((job.id, job.attempt))

    await scheduler.schedule_many("work", [1, 2, 3])
    dead, held = await _dead_worker_holding(scheduler, db, 3)
    async with running(scheduler.worker(poll_interval=60, **FAST)):
        await wait(done.done)
    assert sorted(done.calls) == [(j, 2) for j in held]  # the crashed claim counted as attempt 1
    for job_id in held:
        crashed, ok = await runs(db, scheduler.schema, job_id)
        assert (crashed["attempt"], crashed["outcome"], crashed["worker_id"]) == (1, "crashed", dead)
        assert f"worker {dead} " in crashed["error"]
        assert crashed["started_at"] <= crashed["finished_at"]
        assert (ok["attempt"], ok["outcome"]) == (2, "succeeded")
    assert await db.fetchval(f'SELECT count(*) FROM "{scheduler.schema}".workers WHERE id = $1', dead) == 0


async def test_a_long_job_on_a_live_worker_is_never_taken_over(
    dsn: str, scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """Two workers with a 0.3 s dead deadline; a 1.5 s job on one of them runs exactly once."""
    calls: list[int] = []
    finished = anyio.Event()

    @scheduler.job("long")
    async def long(job: Job) -> None:
        calls.append(job.attempt)
        await anyio.sleep(1.5)
        finished.set()

    other = Scheduler(dsn, schema=scheduler.schema)
    other.register("long", long)
    try:
        async with running(scheduler.worker(**FAST)), running(other.worker(**FAST)):
            job_id = await scheduler.schedule("long")
            await wait(finished)
    finally:
        await other.close()
    assert calls == [1]
    [run] = await runs(db, scheduler.schema, job_id)
    assert run["outcome"] == "succeeded"


async def test_a_job_that_keeps_killing_its_workers_ends_after_max_attempts(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    ran = Counter(1)

    @scheduler.job("poison", max_attempts=3, retry=LinearBackoff(10, 0))
    async def poison(job: Job) -> None:
        ran.hit(job.attempt)

    job_id = await scheduler.schedule("poison")
    store = await pg_store(scheduler)
    for _ in range(3):  # three workers claim it and die before reporting
        await _dead_worker_holding(scheduler, db, 1)
        assert await store.worker_reap(0.1, 0) == (1, 1)
    async with running(scheduler.worker(poll_interval=0.05, on_error=lambda e: None)):
        await until(lambda: hot_empty(db, scheduler.schema))
    assert ran.calls == []  # the fourth claim does not run it
    rows = await runs(db, scheduler.schema, job_id)
    assert [(r["attempt"], r["outcome"]) for r in rows] == [
        (1, "crashed"),
        (2, "crashed"),
        (3, "crashed"),
        (4, "failed"),
    ]
    assert "max_attempts=3" in rows[-1]["error"]
    assert rows[-1]["retry_at"] is None


async def test_fencing_rejects_a_reaped_workers_late_completion(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    scheduler.register("t", lambda job: None)
    store = await pg_store(scheduler)
    job_id = await scheduler.schedule("t")
    stale, [claimed] = await _dead_worker_holding(scheduler, db, 1)
    assert claimed == job_id
    await store.worker_reap(0.1, 0)
    fresh, _server_time = await store.worker_register(["default"])
    [again] = await claim_records(store, ["default"], 1, fresh)
    assert again["attempt"] == 2
    now = time.time()
    late = FlushBatch(end_ids=[job_id], end_attempts=[1], end_started=[now], end_finished=[now])
    res = await store.job_finalize_many(stale, late)
    assert (res.ended, res.runs_logged) == (frozenset(), 0)
    assert await hot_count(db, scheduler.schema) == 1  # still held by the rerun
    good = FlushBatch(end_ids=[job_id], end_attempts=[2], end_started=[now], end_finished=[now])
    assert (await store.job_finalize_many(fresh, good)).ended == {job_id}
    rows = await runs(db, scheduler.schema, job_id)
    assert [(r["attempt"], r["outcome"]) for r in rows] == [(1, "crashed"), (2, "succeeded")]


async def test_a_worker_that_lost_its_row_registers_again_and_keeps_working(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    first = Counter(1)
    second = Counter(1)

    @scheduler.job("a")
    async def a(job: Job) -> None:
        first.hit(job.id)

    @scheduler.job("b")
    async def b(job: Job) -> None:
        second.hit(job.id)

    worker = scheduler.worker(**FAST)
    async with running(worker):
        await scheduler.schedule("a")
        await wait(first.done)
        old = worker.id
        await db.execute(f'DELETE FROM "{scheduler.schema}".workers WHERE id = $1', old)  # reaped
        await fired(worker.signals.lease_lost, 1)
        assert worker.id != old
        await scheduler.schedule("b")
        await wait(second.done)
    assert await db.fetchval(f'SELECT count(*) FROM "{scheduler.schema}".workers') == 0


async def test_shutdown_releases_prefetched_jobs_and_interrupts_after_grace(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    started = Counter(1)

    @scheduler.job("hang")
    async def hang(job: Job) -> None:
        started.hit(job.id)
        await anyio.sleep_forever()

    ids = await scheduler.schedule_many("hang", range(5))
    worker = scheduler.worker(concurrency=1, prefetch=5)
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        await wait(started.done)
        with anyio.fail_after(30):
            await worker.shutdown(grace=0.2)
    [hung] = started.calls
    rows = await runs(db, scheduler.schema)
    assert [(r["job_id"], r["attempt"], r["outcome"]) for r in rows] == [(hung, 1, "interrupted")]
    assert rows[0]["retry_at"] is not None  # put back to run again
    jobs = {r["id"]: r for r in await db.fetch(f'SELECT * FROM "{scheduler.schema}".jobs')}
    assert set(jobs) == set(ids)
    assert all(j["worker_id"] is None for j in jobs.values())
    assert jobs[hung]["attempt"] == 1
    assert jobs[hung]["errors"] == 0  # an interruption is not an error
    assert {jobs[i]["attempt"] for i in ids if i != hung} == {0}  # unstarted: the claim is not counted


async def test_a_hard_stop_records_interrupted_runs(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    started = Counter(2)

    @scheduler.job("hang")
    async def hang(job: Job) -> None:
        started.hit(job.id)
        await anyio.sleep_forever()

    await scheduler.schedule_many("hang", [1, 2])
    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.worker(concurrency=2).run)
        await wait(started.done)
        tg.cancel_scope.cancel()
    rows = await runs(db, scheduler.schema)
    assert sorted((r["job_id"], r["outcome"]) for r in rows) == sorted(
        (j, "interrupted") for j in started.calls
    )
    assert await db.fetchval(f'SELECT count(*) FROM "{scheduler.schema}".jobs WHERE worker_id IS NULL') == 2


async def test_timeout_interrupts_and_the_filter_decides(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    runs_seen = Counter(2)

    @scheduler.job("slow", timeout=0.2, retry=LinearBackoff(1, 0))
    async def slow(job: Job) -> None:
        runs_seen.hit(job.attempt)
        await anyio.sleep(30)

    job_id = await scheduler.schedule("slow")
    worker = scheduler.worker()
    async with running(worker):
        await wait(runs_seen.done)
        await until(lambda: hot_empty(db, scheduler.schema))
    rows = await runs(db, scheduler.schema, job_id)
    assert [(r["attempt"], r["outcome"]) for r in rows] == [(1, "timeout"), (2, "timeout")]
    assert rows[0]["retry_at"] is not None
    assert rows[1]["retry_at"] is None
    assert "exceeded its timeout of 0.2 s" in rows[0]["error"]
    for r in rows:
        assert r["finished_at"] - r["started_at"] >= dt.timedelta(seconds=0.2)  # not cut before its time
    assert worker.timeouts == 2


async def test_a_jobs_own_timeout_overrides_the_type(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    @scheduler.job("sleepy")
    async def sleepy(job: Job) -> None:
        await anyio.sleep(30)

    job_id = await scheduler.schedule("sleepy", timeout=0.1)
    async with running(scheduler.worker()):
        await until(lambda: hot_empty(db, scheduler.schema))
    [run] = await runs(db, scheduler.schema, job_id)
    assert run["outcome"] == "timeout"


async def test_sync_handler_timeout_is_recorded_and_the_thread_finishes_alone(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    import threading

    release = threading.Event()

    @scheduler.job("blocking", timeout=0.1)
    def blocking(job: Job) -> None:
        release.wait(30)

    job_id = await scheduler.schedule("blocking")
    async with running(scheduler.worker()):
        await until(lambda: hot_empty(db, scheduler.schema))
        release.set()
    [run] = await runs(db, scheduler.schema, job_id)
    assert run["outcome"] == "timeout"


async def test_cancel_pending_running_and_unknown(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    started = Counter(1)
    cancelled_inside = anyio.Event()

    @scheduler.job("hang", retry=LinearBackoff(5, 0))
    async def hang(job: Job) -> None:
        started.hit(job.id)
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled_inside.set()
            raise

    later = await scheduler.schedule("hang", run_at=dt.timedelta(hours=1))
    assert await scheduler.cancel(later) is CancelResult.CANCELLED
    async with running(scheduler.worker()):
        running_id = await scheduler.schedule("hang")
        await wait(started.done)
        assert await scheduler.cancel(running_id) is CancelResult.CANCELLING
        await wait(cancelled_inside)
        await until(lambda: hot_empty(db, scheduler.schema))
    assert await scheduler.cancel(running_id) is CancelResult.NOT_FOUND
    assert await scheduler.cancel(10**12) is CancelResult.NOT_FOUND
    [pending_run] = await runs(db, scheduler.schema, later)
    assert (pending_run["outcome"], pending_run["retry_at"]) == ("cancelled", None)
    [running_run] = await runs(db, scheduler.schema, running_id)
    assert (running_run["outcome"], running_run["retry_at"]) == ("cancelled", None)  # not retried


async def test_cancel_reaches_a_claimed_job_that_has_not_started(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    release = anyio.Event()
    ran: list[int] = []

    @scheduler.job("blocker")
    async def blocker(job: Job) -> None:
        await release.wait()

    @scheduler.job("victim")
    async def victim(job: Job) -> None:
        ran.append(job.id)

    await scheduler.schedule("blocker")
    victim_id = await scheduler.schedule("victim")
    worker = scheduler.worker(concurrency=1, prefetch=10)
    async with running(worker):
        claimed = f'SELECT worker_id IS NOT NULL FROM "{scheduler.schema}".jobs WHERE id = $1'
        await until(lambda: db.fetchval(claimed, victim_id))
        noted = worker.signals.cancel_noted.count
        assert await scheduler.cancel(victim_id) is CancelResult.CANCELLING
        await fired(worker.signals.cancel_noted, noted + 1)  # the worker heard of it before the job started
        release.set()
        await until(lambda: hot_empty(db, scheduler.schema))
    assert ran == []
    [run] = await runs(db, scheduler.schema, victim_id)
    assert run["outcome"] == Outcome.CANCELLED


async def test_cancel_without_listen_reaches_the_job_at_the_heartbeat(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    started = Counter(1)

    @scheduler.job("hang")
    async def hang(job: Job) -> None:
        started.hit(job.id)
        await anyio.sleep_forever()

    async with running(scheduler.worker(listen=False, poll_interval=0.05, **FAST)):
        job_id = await scheduler.schedule("hang")
        await wait(started.done)
        assert await scheduler.cancel(job_id) is CancelResult.CANCELLING
        await until(lambda: hot_empty(db, scheduler.schema))
    [run] = await runs(db, scheduler.schema, job_id)
    assert run["outcome"] == "cancelled"


async def test_sync_threads_never_exceed_concurrency_even_when_abandoned(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    import threading

    release = threading.Event()
    lock = threading.Lock()
    active = 0
    peak = 0

    @scheduler.job("stuck", timeout=0.05)
    def stuck(job: Job) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        release.wait(30)
        with lock:
            active -= 1

    ids = await scheduler.schedule_many("stuck", range(6))
    async with running(scheduler.worker(concurrency=2, shutdown_grace=0.1)):
        # The first two runs time out and are abandoned; their threads keep both slots. The
        # runners go on to the other four jobs, which wait for a slot, time out in turn and
        # are recorded: once every job has a run row, each one has been where a third
        # thread would have started, and none did.
        every_job_ran = f'SELECT count(DISTINCT job_id) = 6 FROM "{scheduler.schema}".job_runs'
        await until(lambda: db.fetchval(every_job_ran))
        assert peak == 2
        release.set()
        await until(lambda: hot_empty(db, scheduler.schema))
    assert peak == 2
    outcomes = {(r["job_id"], r["outcome"]) for r in await runs(db, scheduler.schema)}
    assert {(i, "timeout") for i in ids} <= outcomes


async def test_a_sync_run_stopped_before_its_thread_started_gives_its_slot_back(
    scheduler: Scheduler, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """anyio drops a thread call whose waiter is gone before a thread picks it up. The
    run's slot of the runners' thread limiter must come back all the same: at concurrency
    1 the next sync job would otherwise wait for it forever."""
    real = anyio.to_thread.run_sync
    dropped: list[object] = []

    async def drop_the_first_run(func: Callable[..., object], *args: object, **kwargs: Any) -> object:
        if not dropped and func.__qualname__.startswith("Runner."):
            dropped.append(func)
            await anyio.sleep_forever()  # no thread starts it; the run's timeout cancels the wait
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", drop_the_first_run)

    @scheduler.job("sync", timeout=0.2, retry=LinearBackoff(max_retries=0, base_delay=0))
    def sync(job: Job) -> None:
        return None

    first, second = await scheduler.schedule_many("sync", [1, 2])
    async with running(scheduler.worker(concurrency=1)):
        await until(lambda: hot_empty(db, scheduler.schema))
    outcomes = {(r["job_id"], r["outcome"]) for r in await runs(db, scheduler.schema)}
    assert outcomes == {(first, "timeout"), (second, "succeeded")}
    assert len(dropped) == 1


async def test_a_due_job_held_by_someone_else_does_not_cause_a_claim_storm(
    scheduler: Scheduler, db: asyncpg.Connection, dsn: str
) -> None:
    """The job is due, but another session holds its row locked: claims find nothing, the
    next-due query says "now", and the fetcher must back off instead of spinning."""
    scheduler.register("t", lambda job: None)
    job_id = await scheduler.schedule("t", run_at=dt.timedelta(seconds=0.2))
    other = await asyncpg.connect(dsn)
    worker = scheduler.worker(poll_interval=60)
    try:
        tx = other.transaction()
        await tx.start()
        await other.execute(f'SELECT 1 FROM "{scheduler.schema}".jobs WHERE id = $1 FOR UPDATE', job_id)
        async with running(worker):
            # Start, the due time, then at least one empty claim answered by "due now".
            claimed = worker.signals.claimed
            await fired(claimed, 3)
            first, t0 = claimed.count, anyio.current_time()
            await fired(claimed, first + 5)
            last, t1 = claimed.count, anyio.current_time()
            await tx.rollback()
            await until(lambda: hot_empty(db, scheduler.schema))
    finally:
        await other.close()
    # Claims first+1 .. last all happened between the two readings, each at least
    # EMPTY_CLAIM_REARM_S after the one before. A lower bound on the elapsed time: a slow
    # machine only adds to it; a spinning fetcher makes these claims a millisecond apart.
    assert t1 - t0 >= (last - first - 1) * EMPTY_CLAIM_REARM_S


async def test_cancel_notifications_for_jobs_held_elsewhere_are_not_kept(scheduler: Scheduler) -> None:
    scheduler.register("t", lambda job: None)
    worker = scheduler.worker()
    async with running(worker):
        assert worker.cancel_local(123456) is False
        assert worker._stages is not None
        assert worker._stages.jobs.cancelled == set()


async def test_a_dead_workers_job_that_was_asked_to_suspend_is_left_suspended(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    scheduler.register("t", lambda job: None, suspendable=True)
    store = await pg_store(scheduler)
    job_id = await scheduler.schedule("t")
    _, [claimed] = await _dead_worker_holding(scheduler, db, 1)
    assert claimed == job_id
    await scheduler.suspend(job_id)  # its worker never hears of it: it is dead
    assert await store.worker_reap(0.1, 0) == (1, 1)
    record = await scheduler.get_job(job_id)
    assert (record.state, record.suspend_requested) == (JobState.SUSPENDED, False)
    assert record.runs[-1].outcome is Outcome.CRASHED


async def test_claimed_jobs_handed_back_after_a_suspend_request_are_left_suspended(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """A job asked to suspend while it waited unstarted in a worker's buffer, and handed
    back at shutdown (release) or with the worker's row (deregister), stays suspended."""
    scheduler.register("t", lambda job: None, suspendable=True)
    store = await pg_store(scheduler)
    released, deregistered = await scheduler.schedule_many("t", [1, 2])
    wid, _ = await store.worker_register(["default"])
    assert sorted(r["id"] for r in await claim_records(store, ["default"], 2, wid)) == [
        released,
        deregistered,
    ]
    await scheduler.suspend(released)
    await scheduler.suspend(deregistered)
    assert await store.job_release_many(wid, [released]) == 1
    assert await store.worker_deregister(wid) == 1
    for job_id in (released, deregistered):
        record = await scheduler.get_job(job_id)
        assert (record.state, record.suspend_requested) == (JobState.SUSPENDED, False)
    await scheduler.resume(released)
    assert (await scheduler.get_job(released)).state is JobState.PENDING
