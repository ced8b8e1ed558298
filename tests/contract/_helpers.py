"""Waits the contract tests share: they read the public API only, so they work on both backends."""

from __future__ import annotations

from pgqueue import JobRecord, JobState, Scheduler
from tests._support import until


async def state_of(s: Scheduler, job_id: int) -> JobState:
    return (await s.get_job(job_id)).state


async def reach(s: Scheduler, job_id: int, state: JobState) -> JobRecord:
    """Wait until the job is in ``state``; its record then."""

    async def reached() -> bool:
        return (await state_of(s, job_id)) is state

    await until(reached)
    return await s.get_job(job_id)


async def ended(s: Scheduler, *ids: int) -> list[JobRecord]:
    """Wait until every job has ended (its final run written); their records, in order."""

    async def all_ended() -> bool:
        return all([(await state_of(s, i)).finished for i in ids])

    await until(all_ended)
    return [await s.get_job(i) for i in ids]


async def logged(s: Scheduler, job_id: int, n: int) -> JobRecord:
    """Wait until ``n`` runs of the job are logged; its record then."""

    async def enough() -> bool:
        return len((await s.get_job(job_id)).runs) >= n

    await until(enough)
    return await s.get_job(job_id)


async def nothing_stored(s: Scheduler) -> bool:
    """No job at all, live or finished: what a refused call must leave."""
    stats = await s.stats()
    return (await s.list_jobs()).items == () and stats.by_queue == {} and stats.by_type == {}
