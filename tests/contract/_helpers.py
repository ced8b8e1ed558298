"""Waits and handlers the contract tests share: they use the public API only, so they work
on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager

import anyio

from pgqueue import Job, JobRecord, JobState, Scheduler
from tests._support import Counter, running, until


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


async def run_until_ended(
    s: Scheduler, *ids: int, queues: Iterable[str] | None = None, **options: object
) -> list[JobRecord]:
    """Run a worker until every job has ended; their records, in order.

    The worker polls once an hour unless ``options`` say otherwise: within a test's wait it
    finds jobs at its start, by notification or by its due-time timer, never by a poll.
    """
    async with running(s.worker(queues, **{"poll_interval": 3600, **options})):
        return await ended(s, *ids)


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


def raising(error: type[BaseException], *args: object) -> Callable[[Job], Awaitable[None]]:
    """A handler whose every run raises ``error(*args)``, a new one each time."""

    async def handler(job: Job) -> None:
        raise error(*args)

    return handler


def noting(
    calls: Counter, what: Callable[[Job], object] = lambda job: job.params
) -> Callable[[Job], Awaitable[None]]:
    """A handler that notes ``what(job)`` of each run (its params) in ``calls``, in the order
    the runs start. Async on purpose: a sync handler runs in a thread, and ``calls``' event
    must be set on the event loop."""

    async def handler(job: Job) -> None:
        calls.hit(what(job))

    return handler


class Hold:
    """A handler that holds its runs: each notes its job's id in ``started``, then waits for
    :meth:`release` and returns ``result``. A run never released waits until its worker
    stops it (a cancel, a shutdown)."""

    def __init__(self, runs: int = 1, result: object = None) -> None:
        self.started = Counter(runs)
        self.result = result
        self._released = anyio.Event()

    async def run(self, job: Job) -> object:
        self.started.hit(job.id)
        await self._released.wait()
        return self.result

    def release(self) -> None:
        self._released.set()


@asynccontextmanager
async def wait_in_background(s: Scheduler, job_id: int) -> AsyncIterator[list[JobRecord]]:
    """``s.wait(job_id)`` in a task of its own, blocked in the wait when the block starts; the
    block's end waits for it, and the list then holds the record it returned."""
    result: list[JobRecord] = []

    async def wait_for_the_end() -> None:
        result.append(await s.wait(job_id, timeout=30))

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_for_the_end)
        await anyio.wait_all_tasks_blocked()
        yield result
