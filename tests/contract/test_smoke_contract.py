"""A first contract test: schedule, run, look up."""

from __future__ import annotations

from pgqueue import Job, JobState, Scheduler
from tests._support import running, until


async def test_a_job_runs_and_its_record_says_so(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler

    @s.job("t")
    async def t(job: Job) -> int:
        return 7

    job_id = await s.schedule("t", {"x": 1})
    assert (await s.get_job(job_id)).state is JobState.PENDING
    async with running(s.worker(poll_interval=3600)):

        async def ended() -> bool:
            return (await s.get_job(job_id)).state.finished

        await until(ended)
    record = await s.get_job(job_id)
    assert (record.state, record.result, record.params) == (JobState.SUCCEEDED, 7, {"x": 1})
