"""The claim by id on each backend: ``job_claim_announced`` and the idle worker that uses it.

A job scheduled due now is announced by id (a ``j:`` notification); an idle worker claims
it by primary key instead of searching its queues. The claim must take exactly what a
search would have taken of those ids, and nothing a search would not.
"""

from __future__ import annotations

import datetime as dt

from pgqueue import Scheduler
from pgqueue._models import ROW_ATTEMPT, ROW_ID, ROW_QUEUE
from tests._support import QUIET, ClaimSpy, Counter, fired, running, until, wait, worker_on
from tests.contract._helpers import ended, noting


async def wait_until_ran(calls: Counter, n: int) -> None:
    await until(lambda: len(calls.calls) >= n)


async def test_a_claim_by_id_takes_only_the_named_ready_jobs_of_its_queues_in_claim_order(
    backend_scheduler: Scheduler,
) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None, queue="q")
    s.register("u", lambda job: None, queue="other")
    low = await s.schedule("t", priority=5)
    high = await s.schedule("t", priority=1)
    elsewhere = await s.schedule("u")
    later = await s.schedule("t", run_at=dt.timedelta(hours=1))
    unnamed = await s.schedule("t")
    taken = await s.schedule("t", priority=-1)
    store = await s.open()
    wid, _ = await store.worker_register(["q", "other"])
    rival, _ = await store.worker_register(["q"])
    assert [r[ROW_ID] for r in await store.job_claim_announced([taken], ["q"], 10, rival)] == [taken]

    named = [low, high, elsewhere, later, taken, 10**12]
    first = await store.job_claim_announced(named, ["q"], 1, wid)
    assert [r[ROW_ID] for r in first] == [high]  # the best of those still ready, as a search orders them
    assert (first[0][ROW_QUEUE], first[0][ROW_ATTEMPT]) == ("q", 1)
    rest = await store.job_claim_announced(named, ["q"], 10, wid)
    assert [r[ROW_ID] for r in rest] == [low]  # not the other queue's, the delayed, or a claimed one
    assert await store.job_claim_announced(named, ["q"], 10, wid) == []
    searched = await store.job_claim_many(["q", "other"], 10, wid)
    assert sorted(r[ROW_ID] for r in searched) == sorted([elsewhere, unnamed])  # left for a search


async def test_a_deregistered_worker_claims_nothing_by_id(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None, queue="q")
    job_id = await s.schedule("t")
    store = await s.open()
    gone, _ = await store.worker_register(["q"])
    await store.worker_deregister(gone)
    assert await store.job_claim_announced([job_id], ["q"], 1, gone) == []
    wid, _ = await store.worker_register(["q"])
    assert [r[ROW_ID] for r in await store.job_claim_announced([job_id], ["q"], 1, wid)] == [job_id]


async def test_an_idle_worker_claims_a_job_announced_to_it_by_id(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    calls = Counter(2)
    s.register("t", noting(calls), queue="q")
    spy = ClaimSpy(await s.open())  # type: ignore[arg-type] # a wrapper reads any store's attributes
    worker = worker_on(s, spy, concurrency=4, **QUIET)
    async with running(worker):
        await fired(worker.signals.claimed, 1)  # the start-up search found nothing: idle
        first = await s.schedule("t", {"n": 1})
        await fired(worker.signals.claimed, 2)
        second = await s.schedule("t", {"n": 2})
        await wait(calls.done)
        await ended(s, first, second)
    assert spy.claims == [("search", []), ("by id", [first]), ("by id", [second])]


async def test_jobs_scheduled_back_to_back_beyond_the_runners_each_run_once(
    backend_scheduler: Scheduler,
) -> None:
    """Announced faster than two runners take them (claims by id, or a search past the
    runners' count): every job runs, once."""
    s = backend_scheduler
    calls = Counter(12)
    s.register("t", noting(calls), queue="q")
    worker = s.worker(concurrency=2, **QUIET)

    async def burst() -> list[int]:
        return [await s.schedule("t", {"n": n}) for n in range(12)]

    async with running(worker):
        await fired(worker.signals.claimed, 1)
        ids = await burst()
        await wait(calls.done)
        await ended(s, *ids)
    assert sorted(p["n"] for p in calls.calls) == list(range(12))


async def test_jobs_given_back_by_a_shutdown_or_a_deregistration_wake_an_idle_worker(
    backend_scheduler: Scheduler,
) -> None:
    """No job notification announces a job handed back: the release itself wakes its queue."""
    s = backend_scheduler
    calls = Counter(2)
    s.register("t", noting(calls), queue="q")
    store = await s.open()
    leaving, _ = await store.worker_register(["q"])
    put_back, held = await s.schedule("t", {"n": 1}), await s.schedule("t", {"n": 2})
    assert len(await store.job_claim_many(["q"], 2, leaving)) == 2
    worker = s.worker(concurrency=2, **QUIET)
    async with running(worker):
        await fired(worker.signals.claimed, 1)  # its start-up search found both held: idle
        assert await store.job_release_many(leaving, [put_back, put_back]) == 1  # the unstarted one
        await wait_until_ran(calls, 1)
        assert await store.worker_deregister(leaving) == 1  # the rest
        await wait(calls.done)
        await ended(s, put_back, held)
    assert sorted(p["n"] for p in calls.calls) == [1, 2]
