"""suspend() of a running job on PostgreSQL: the request carried by the heartbeat when there
is no LISTEN; checkpoints that cannot be stored. Stopping at a checkpoint and resuming from
it, on both backends: tests/contract/test_worker_contract.py."""

from __future__ import annotations

import math

import anyio
import pytest

from pgqueue import (
    Job,
    JobState,
    Outcome,
    ParamsEncodeError,
    Scheduler,
    Suspended,
)
from tests._support import Counter, running, until, wait

pytestmark = pytest.mark.pg


async def _state_is(scheduler: Scheduler, job_id: int, state: JobState) -> None:
    async def reached() -> bool:
        return (await scheduler.get_job(job_id)).state is state

    await until(reached)


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
