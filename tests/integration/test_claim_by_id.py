"""The claim by id on PostgreSQL: a row another transaction holds, and a burst at one commit."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import asyncpg

from pgqueue import JobState, Scheduler
from pgqueue.store import Held
from tests._support import (
    QUIET,
    ClaimSpy,
    Counter,
    fired,
    pg_store,
    running,
    wait,
    worker_on,
)
from tests.contract._helpers import ended, noting, state_of


async def test_an_announced_job_whose_row_is_held_is_searched_for_and_run_once_released(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """The claim by id skips a locked row; no notification announces it again, and the
    poll and the look at the limits are an hour away: the fetcher's own later search runs it."""
    s = scheduler
    calls = Counter(1)
    s.register("t", noting(calls), queue="q")
    store = await pg_store(s)
    spy = ClaimSpy(store)
    held_by_test = db.transaction()
    missed = anyio.Event()

    async def by_id_while_locked(
        ids: Sequence[int], queues: Sequence[str], limit: int, worker_id: int, held: Held | None = None
    ) -> list[object]:
        await held_by_test.start()  # a second call would fail here: the test expects one
        await db.execute(f'SELECT 1 FROM "{s.schema}".jobs WHERE id = ANY($1::bigint[]) FOR UPDATE', ids)
        rows = await store.job_claim_announced(ids, queues, limit, worker_id, held)
        spy.hold_searches = released  # the search that follows the miss: after the test lets go
        missed.set()
        return list(rows)

    released = anyio.Event()
    spy.override("job_claim_announced", by_id_while_locked)
    worker = worker_on(s, spy, concurrency=2, **QUIET)
    async with running(worker):
        await fired(worker.signals.claimed, 1)
        job_id = await s.schedule("t")
        await wait(missed)
        assert await state_of(s, job_id) is JobState.PENDING
        await held_by_test.rollback()
        released.set()
        await wait(calls.done)
        await ended(s, job_id)
    assert spy.claims == [("search", []), ("search", [job_id])]  # at start-up, then after the miss


async def test_jobs_committed_together_beyond_the_runners_are_claimed_by_a_search(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    s = scheduler
    calls = Counter(20)
    s.register("t", noting(calls), queue="q")
    spy = ClaimSpy(await pg_store(s))
    worker = worker_on(s, spy, concurrency=2, **QUIET)
    async with running(worker):
        await fired(worker.signals.claimed, 1)
        async with db.transaction():  # twenty notifications at one commit
            ids = [await s.schedule("t", {"n": n}, conn=db) for n in range(20)]
        await wait(calls.done)
        await ended(s, *ids)
    assert max(len(took) for how, took in spy.claims if how == "search") > 1
    assert sorted(p["n"] for p in calls.calls) == list(range(20))


async def test_jobs_a_reaped_worker_held_wake_an_idle_worker(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """The reaper's release announces the freed jobs' queues: no job notification does."""
    s = scheduler
    calls = Counter(1)
    s.register("t", noting(calls), queue="q")
    store = await pg_store(s)
    dead, _ = await store.worker_register(["q"])
    job_id = await s.schedule("t")
    assert len(await store.job_claim_many(["q"], 1, dead)) == 1
    silent = f"UPDATE \"{s.schema}\".workers SET heartbeat = now() - interval '1 hour' WHERE id = $1"
    await db.execute(silent, dead)
    worker = s.worker(concurrency=2, maintenance=False, **QUIET)
    async with running(worker):
        await fired(worker.signals.claimed, 1)  # its start-up search found the job held: idle
        assert await store.worker_reap(60.0, 0) == (1, 1)
        await wait(calls.done)
        [record] = await ended(s, job_id)
    assert record.state is JobState.SUCCEEDED
