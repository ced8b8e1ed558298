"""suspend() of a running job: a suspendable type stops at a checkpoint and resumes from it."""

from __future__ import annotations

import math

import anyio
import pytest

from pgqueue import (
    InvalidStateError,
    Job,
    JobState,
    LinearBackoff,
    Outcome,
    ParamsEncodeError,
    Scheduler,
    Suspended,
)
from tests._support import Counter, fired, running, until, wait

pytestmark = pytest.mark.pg


async def _state_is(scheduler: Scheduler, job_id: int, state: JobState) -> None:
    async def reached() -> bool:
        return (await scheduler.get_job(job_id)).state is state

    await until(reached)


async def test_a_running_suspendable_job_stops_at_a_checkpoint_and_resumes_from_it(
    scheduler: Scheduler,
) -> None:
    at_step: list[int] = []
    step_reached = Counter(3)
    go_on = anyio.Event()
    starts: list[object] = []

    @scheduler.job("export", suspendable=True, max_attempts=1)
    async def export(job: Job) -> str:
        starts.append(job.checkpoint_data)
        first = 0 if job.checkpoint_data is None else job.checkpoint_data["step"]
        for step in range(first, 5):
            await job.checkpoint({"step": step})
            at_step.append(step)
            step_reached.hit(step)
            if step == 2:
                await go_on.wait()
        return "exported"

    # No heartbeat within the test's wait: the notification alone must carry the request.
    worker = scheduler.worker(poll_interval=3600, heartbeat_interval=600, dead_after=1800)
    async with running(worker):
        job_id = await scheduler.schedule("export", None)
        await wait(step_reached.done)
        await scheduler.suspend(job_id)
        live = await scheduler.get_job(job_id)
        assert (live.state, live.suspend_requested) == (JobState.RUNNING, True)
        await fired(worker.signals.suspend_noted, 1)
        go_on.set()
        await _state_is(scheduler, job_id, JobState.SUSPENDED)

        suspended = await scheduler.get_job(job_id)
        assert suspended.checkpoint == {"step": 3}
        assert suspended.suspend_requested is False
        assert suspended.runs[-1].outcome is Outcome.SUSPENDED
        assert at_step == [0, 1, 2]

        await scheduler.resume(job_id)
        await _state_is(scheduler, job_id, JobState.SUCCEEDED)
    done = await scheduler.get_job(job_id)
    assert done.result == "exported"
    # max_attempts=1, yet the resumed run ran: a suspended run does not count.
    assert [r.outcome for r in done.runs] == [Outcome.SUSPENDED, Outcome.SUCCEEDED]
    assert starts == [None, {"step": 3}]
    assert at_step == [0, 1, 2, 3, 4]


async def test_a_running_job_of_a_plain_type_cannot_be_suspended(scheduler: Scheduler) -> None:
    started, release = Counter(1), anyio.Event()

    @scheduler.job("plain")
    async def plain(job: Job) -> None:
        started.hit(job.id)
        await release.wait()

    async with running(scheduler.worker(poll_interval=3600)):
        job_id = await scheduler.schedule("plain", None)
        await wait(started.done)
        with pytest.raises(InvalidStateError, match=rf"cannot suspend job {job_id}: job {job_id} is running"):
            await scheduler.suspend(job_id)
        assert (await scheduler.get_job(job_id)).suspend_requested is False
        release.set()
        await _state_is(scheduler, job_id, JobState.SUCCEEDED)


async def test_the_heartbeat_delivers_a_suspend_request_without_listen(scheduler: Scheduler) -> None:
    started = Counter(1)

    @scheduler.job("long", suspendable=True)
    async def long(job: Job) -> None:
        started.hit(job.id)
        for _ in range(3000):  # a unit of work per turn, checking between them
            await anyio.sleep(0.01)
            if job.suspend_requested:
                raise Suspended
        raise AssertionError("no suspend request reached the handler")

    worker = scheduler.worker(listen=False, poll_interval=0.05, heartbeat_interval=0.1)
    async with running(worker):
        job_id = await scheduler.schedule("long", None)
        await wait(started.done)
        await scheduler.suspend(job_id)
        await _state_is(scheduler, job_id, JobState.SUSPENDED)
    record = await scheduler.get_job(job_id)
    assert record.runs[-1].outcome is Outcome.SUSPENDED
    assert record.runs[-1].error == "suspended"
    assert record.checkpoint is None


async def test_a_run_that_fails_after_a_suspend_request_leaves_the_job_suspended(
    scheduler: Scheduler,
) -> None:
    started = Counter(1)

    @scheduler.job("t", suspendable=True, retry=LinearBackoff(5, 0.0))
    async def t(job: Job) -> None:
        started.hit(job.id)
        for _ in range(3000):
            await anyio.sleep(0.01)
            if job.suspend_requested:
                raise RuntimeError("failed while asked to suspend")
        raise AssertionError("no suspend request reached the handler")

    async with running(scheduler.worker(poll_interval=3600)):
        job_id = await scheduler.schedule("t", None)
        await wait(started.done)
        await scheduler.suspend(job_id)
        await _state_is(scheduler, job_id, JobState.SUSPENDED)
    record = await scheduler.get_job(job_id)
    assert [r.outcome for r in record.runs] == [Outcome.FAILED]
    assert record.errors == 1


async def test_a_checkpoint_carries_over_to_the_retry(scheduler: Scheduler) -> None:
    seen: list[object] = []

    @scheduler.job("t", retry=LinearBackoff(3, 0.0))
    async def t(job: Job) -> None:
        seen.append(job.checkpoint_data)
        if job.attempt == 1:
            await job.checkpoint({"done": ["a", "b"]})
            raise RuntimeError("transient")

    async with running(scheduler.worker(poll_interval=3600)):
        job_id = await scheduler.schedule("t", None)
        await _state_is(scheduler, job_id, JobState.SUCCEEDED)
    assert seen == [None, {"done": ["a", "b"]}]


async def test_a_checkpoint_that_cannot_be_stored_fails_the_run(scheduler: Scheduler) -> None:
    @scheduler.job("t")
    async def t(job: Job) -> None:
        await job.checkpoint({"x": math.nan})

    async with running(scheduler.worker(poll_interval=3600)):
        job_id = await scheduler.schedule("t", None)
        await _state_is(scheduler, job_id, JobState.FAILED)
    assert "ParamsEncodeError" in ((await scheduler.get_job(job_id)).last_error or "")


async def test_a_job_built_by_hand_carries_a_checkpoint_and_can_be_asked_to_suspend() -> None:
    job = Job(id=1, type="t", checkpoint={"page": 4})
    assert job.checkpoint_data == {"page": 4}
    assert job.suspend_requested is False
    await job.checkpoint({"page": 5})  # nothing asked: returns
    job._request_suspend()  # what the worker does on a request
    assert job.suspend_requested is True
    with pytest.raises(Suspended):
        await job.checkpoint({"page": 6})
    with pytest.raises(ParamsEncodeError):
        Job(id=2, type="t", checkpoint={"bad": math.inf})
