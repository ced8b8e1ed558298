"""Worker admin on each backend: list_workers() and remove_worker(), with real workers."""

from __future__ import annotations

import anyio
import pytest

from pgqueue import (
    ConfigError,
    Job,
    JobState,
    Outcome,
    Scheduler,
    WorkerHasActiveJobs,
    WorkerInfo,
    WorkerNotFound,
)
from tests._support import Counter, fired, running, wait
from tests.contract._helpers import Hold, ended, reach


async def _listed(s: Scheduler, worker_id: int) -> WorkerInfo:
    [info] = [w for w in await s.list_workers() if w.id == worker_id]
    return info


async def test_list_workers_shows_concurrency_kind_and_the_jobs_each_holds(
    backend_scheduler: Scheduler,
) -> None:
    s = backend_scheduler
    hold = Hold(2)
    s.register("t", hold.run, queue="q1")
    busy = s.worker(["q1"], concurrency=3, poll_interval=3600)
    idle = s.worker(["q2", "q3"], concurrency=7, poll_interval=3600)
    async with running(busy), running(idle):
        ids = [await s.schedule("t"), await s.schedule("t")]
        await wait(hold.started.done)
        listed = await s.list_workers()
        assert [w.id for w in listed] == sorted([busy.id, idle.id])  # oldest first
        b, i = await _listed(s, busy.id), await _listed(s, idle.id)
        assert (b.kind, b.concurrency, b.queues, b.jobs_held) == ("worker", 3, ("q1",), 2)
        assert (i.kind, i.concurrency, i.queues, i.jobs_held) == ("worker", 7, ("q2", "q3"), 0)
        assert b.started_at <= b.heartbeat
        assert await s.workers() == listed  # the first name of the same list
        hold.release()
        await ended(s, *ids)
        assert (await _listed(s, busy.id)).jobs_held == 0
    assert await s.list_workers() == []  # a worker that stops deregisters


async def test_remove_worker_refuses_an_unknown_id_and_bad_arguments(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    with pytest.raises(WorkerNotFound, match="no registered worker has id 999"):
        await s.remove_worker(999)
    with pytest.raises(WorkerNotFound):
        await s.remove_worker(2**70)  # past a bigint: names no worker, never a driver error
    with pytest.raises(LookupError):
        await s.remove_worker(0)
    for bad in ("1", 1.0, True, None):
        with pytest.raises(ConfigError, match="worker_id must be an integer"):
            await s.remove_worker(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="force must be True or False"):
        await s.remove_worker(1, force=1)  # type: ignore[arg-type]


async def test_remove_worker_refuses_while_it_holds_a_job_and_force_releases_it(
    backend_scheduler: Scheduler,
) -> None:
    """The first worker's handler blocks; removing it is refused, then forced: its job gets
    a crashed run (the attempt counted) and runs again on the second worker, woken by the
    release's notification (both poll once an hour)."""
    s = backend_scheduler
    first_run, second_run, release = Counter(1), Counter(1), anyio.Event()

    @s.job("t")
    async def t(job: Job) -> str:
        if job.attempt == 1:
            first_run.hit(job.id)
            await release.wait()
            return "first"
        second_run.hit(job.attempt)
        return "second"

    stuck = s.worker(poll_interval=3600, heartbeat_interval=3600, dead_after=10800)  # never notices
    async with running(stuck):
        job_id = await s.schedule("t")
        await wait(first_run.done)
        with pytest.raises(WorkerHasActiveJobs) as refused:
            await s.remove_worker(stuck.id)
        assert (refused.value.worker_id, refused.value.held) == (stuck.id, 1)
        assert "force=True" in str(refused.value)
        assert (await _listed(s, stuck.id)).jobs_held == 1  # nothing changed
        assert (await s.get_job(job_id)).state is JobState.RUNNING

        async with running(s.worker(poll_interval=3600)) as other:
            assert await s.remove_worker(stuck.id, force=True) == 1
            await wait(second_run.done)
            [done] = await ended(s, job_id)
            release.set()  # the first run ends now: its result is fenced out
        assert await s.list_workers() == []  # the stuck worker's row stays gone: it never heartbeats here
    assert second_run.calls == [2]
    assert (done.state, done.result, done.attempts) == (JobState.SUCCEEDED, "second", 2)
    crashed, succeeded = done.runs
    assert (crashed.attempt, crashed.outcome, crashed.worker_id) == (1, Outcome.CRASHED, stuck.id)
    assert crashed.error is not None
    assert f"worker {stuck.id} " in crashed.error
    assert (succeeded.attempt, succeeded.outcome, succeeded.worker_id) == (2, Outcome.SUCCEEDED, other.id)
    assert (await s.get_job(job_id)).result == "second"  # the first run's late result changed nothing


async def test_remove_worker_without_jobs_drops_its_row_and_the_live_worker_registers_again(
    backend_scheduler: Scheduler,
) -> None:
    """A live worker whose row was removed behaves as a reaped one: its next heartbeat finds
    no row, and it registers again under a new id (and keeps working)."""
    s = backend_scheduler
    hold = Hold()
    s.register("t", hold.run)
    worker = s.worker(poll_interval=3600, heartbeat_interval=0.05)
    async with running(worker):
        old = worker.id
        lost = worker.signals.lease_lost.count
        assert await s.remove_worker(old) == 0
        assert old not in [w.id for w in await s.list_workers()]
        await fired(worker.signals.lease_lost, lost + 1)
        assert worker.id not in (0, old)
        assert worker.reregistrations == 1
        assert [w.id for w in await s.list_workers()] == [worker.id]
        job_id = await s.schedule("t")  # the worker claims under its new id
        await wait(hold.started.done)
        await reach(s, job_id, JobState.RUNNING)
        assert (await _listed(s, worker.id)).jobs_held == 1
        hold.release()
        await ended(s, job_id)
    with pytest.raises(WorkerNotFound):
        await s.remove_worker(old)
