"""current_scheduler() and current_job() inside handlers a real worker runs, on each backend."""

from __future__ import annotations

import anyio
import pytest

from pgqueue import (
    ContextNotSetError,
    Job,
    JobState,
    Scheduler,
    current_job,
    current_scheduler,
)
from pgqueue.testing import drain
from tests._support import Counter
from tests.contract._helpers import run_until_ended


async def schedule_follow_up(note: str) -> int:
    """Library code: it is handed neither the scheduler nor the job."""
    parent = current_job()
    return await current_scheduler().schedule("child", {"parent": parent.id, "note": note})


async def test_async_and_sync_handlers_see_the_workers_scheduler_and_their_job(
    backend_scheduler: Scheduler,
) -> None:
    s = backend_scheduler

    @s.job("async")
    async def in_loop(job: Job) -> dict[str, object]:
        return {"scheduler": current_scheduler() is s, "job": current_job().id, "same": current_job() is job}

    @s.job("sync")
    def in_thread(job: Job) -> dict[str, object]:  # runs in a worker thread: the context is copied there
        return {"scheduler": current_scheduler() is s, "job": current_job().id, "same": current_job() is job}

    ids = [await s.schedule("async"), await s.schedule("sync")]
    done = await run_until_ended(s, *ids)
    assert [r.result for r in done] == [{"scheduler": True, "job": i, "same": True} for i in ids]
    with pytest.raises(ContextNotSetError):  # the worker's values never leak into the caller
        current_job()
    with pytest.raises(ContextNotSetError):
        current_scheduler()


async def test_concurrent_runs_each_see_their_own_job(backend_scheduler: Scheduler) -> None:
    """Both runs are inside their handlers at once (each waits for the other to start), and a
    task each handler starts inherits its job."""
    s = backend_scheduler
    started = Counter(2)

    @s.job("t")
    async def t(job: Job) -> list[int]:
        seen = [current_job().id]
        started.hit(job.id)
        await started.done.wait()  # the other run has set its job meanwhile
        seen.append(current_job().id)
        async with anyio.create_task_group() as tg:

            async def child() -> None:
                seen.append(current_job().id)

            tg.start_soon(child)
        return seen

    ids = [await s.schedule("t"), await s.schedule("t")]
    done = await run_until_ended(s, *ids, concurrency=2)
    assert sorted(started.calls) == sorted(ids)
    assert [r.result for r in done] == [[i, i, i] for i in ids]


async def test_library_code_schedules_a_follow_up_through_the_context(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    children = Counter(1)

    @s.job("parent")
    async def parent(job: Job) -> int:
        return await schedule_follow_up("from a handler")

    @s.job("child")
    async def child(job: Job) -> None:
        children.hit(job.params)

    parent_id = await s.schedule("parent")
    [done] = await run_until_ended(s, parent_id)
    child_id = done.result
    assert isinstance(child_id, int)
    [child_done] = await run_until_ended(s, child_id)
    assert child_done.state is JobState.SUCCEEDED
    assert children.calls == [{"parent": parent_id, "note": "from a handler"}]


async def test_drain_sets_them_as_a_worker_does(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    seen: list[object] = []

    @s.job("parent")
    async def parent(job: Job) -> None:
        await schedule_follow_up("drained")

    @s.job("child")
    def child(job: Job) -> None:
        seen.append((current_scheduler() is s, current_job().params["parent"]))

    parent_id = await s.schedule("parent")
    runs = await drain(s)
    assert [r.type for r in runs] == ["parent", "child"]
    assert seen == [(True, parent_id)]
    with pytest.raises(ContextNotSetError):
        current_scheduler()
