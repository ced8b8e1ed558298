"""current_scheduler() and current_job(): who sets them, and where they are not set (in-memory)."""

from __future__ import annotations

import anyio
import pytest

from pgqueue import (
    ContextNotSetError,
    Job,
    Outcome,
    PgQueueError,
    Scheduler,
    current_job,
    current_scheduler,
)
from pgqueue.testing import run_job
from tests._support import Counter, running, wait


def test_outside_everything_both_raise_a_lookup_error_that_says_where_they_are_set() -> None:
    where = r"inside a handler run by a worker .* `async with scheduler:`"
    with pytest.raises(ContextNotSetError, match=where):
        current_scheduler()
    with pytest.raises(ContextNotSetError, match="only inside a job's handler"):
        current_job()
    assert issubclass(ContextNotSetError, LookupError)
    assert issubclass(ContextNotSetError, PgQueueError)


async def test_async_with_sets_the_scheduler_for_the_block_and_resets_it() -> None:
    outer, inner = Scheduler.in_memory(), Scheduler.in_memory()
    with pytest.raises(LookupError):
        current_scheduler()
    async with outer:
        assert current_scheduler() is outer
        async with inner:
            assert current_scheduler() is inner
        assert current_scheduler() is outer
        async with outer:  # re-entered: each block resets its own value
            assert current_scheduler() is outer
        assert current_scheduler() is outer
    with pytest.raises(LookupError):
        current_scheduler()


async def test_async_with_resets_when_the_block_raises() -> None:
    s = Scheduler.in_memory()
    with pytest.raises(RuntimeError, match="boom"):
        async with s:
            raise RuntimeError("boom")
    with pytest.raises(LookupError):
        current_scheduler()


async def test_tasks_started_inside_the_block_inherit_it_and_others_do_not_see_it() -> None:
    s = Scheduler.in_memory()
    seen: list[object] = []
    entered, leave = anyio.Event(), anyio.Event()

    async def inside() -> None:
        async with s:
            entered.set()
            await leave.wait()

    async def elsewhere() -> None:
        await entered.wait()
        try:
            seen.append(current_scheduler())
        except LookupError:
            seen.append(None)
        leave.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(inside)
        tg.start_soon(elsewhere)
    assert seen == [None]


async def test_the_workers_own_scheduler_wins_over_the_callers() -> None:
    app, other = Scheduler.in_memory(), Scheduler.in_memory()
    seen = Counter(1)

    @app.job("t")
    async def t(job: Job) -> None:
        seen.hit(current_scheduler())

    async with other:  # the caller's block is another scheduler
        async with running(app.worker(poll_interval=3600)):
            await app.schedule("t")
            await wait(seen.done)
        assert current_scheduler() is other  # the worker reset what it set, in its own task
    assert seen.calls == [app]


async def test_run_job_sets_the_job_and_the_scheduler_given() -> None:
    s = Scheduler.in_memory()

    async def handler(job: Job) -> list[object]:
        return [current_job().id, current_job() is job, current_scheduler() is s]

    done = await run_job(handler, {"x": 1}, scheduler=s, job_id=42)
    assert (done.outcome, done.result) == (Outcome.SUCCEEDED, [42, True, True])

    def sync_handler(job: Job) -> int:
        return current_job().id

    assert (await run_job(sync_handler, job_id=7)).result == 7

    async def no_scheduler(job: Job) -> None:
        current_scheduler()

    alone = await run_job(no_scheduler)
    assert alone.outcome is Outcome.FAILED
    assert alone.error is not None
    assert "ContextNotSetError: no current scheduler" in alone.error
    with pytest.raises(LookupError):
        current_job()
