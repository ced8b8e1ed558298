"""Pull mode on both backends: dequeue, claim, dequeue_by_id, fenced leases and their expiry.

A lease is expired by :func:`expire`: on PostgreSQL its deadline is moved into the past with
SQL, on the memory backend its clock is moved past it with ``advance()``; either way the job
is then freed, as the next sweep frees it. PostgreSQL-only checks (columns, the maintenance
leader, the consumer's own sweep, an unreachable database, closing) are in
``tests/integration/test_pull.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import cast

import anyio
import pytest

from pgqueue import (
    ConfigError,
    JobCancelled,
    JobNotFound,
    JobState,
    LeaseLost,
    LinearBackoff,
    NotPending,
    NotRunning,
    ParamsEncodeError,
    Scheduler,
    WorkerHasActiveJobs,
)
from pgqueue._models import ROW_ATTEMPT
from pgqueue.pull import Lease
from pgqueue.pull import consumer as consumer_module
from pgqueue.pull.store import PullStore
from pgqueue.store.memory import MemoryStore
from pgqueue.store.postgres.queries import quote_ident
from pgqueue.store.pull_rows import HOLDER, LEASE_UNTIL
from pgqueue.testing import advance
from tests._support import pg_store, until

WAIT = 10.0  # seconds a test waits for what must happen well before

PULLED = ("t", "a", "b", "anything", "unregistered")  # types no handler runs here


def declare(s: Scheduler) -> None:
    for name in PULLED:
        s.declare(name)


@pytest.fixture
def s(backend_scheduler: Scheduler) -> Scheduler:
    declare(backend_scheduler)
    return backend_scheduler


@pytest.fixture
async def other(s: Scheduler) -> AsyncIterator[Scheduler]:
    """A second scheduler on the same backend: another process's consumer, as far as leases go."""
    peer = Scheduler(backend=await s.open())
    declare(peer)
    try:
        yield peer
    finally:
        await peer.close()


async def pull_store(s: Scheduler) -> PullStore:
    store = await s.open()
    assert isinstance(store, PullStore)
    return store


async def expire(s: Scheduler, lease: Lease) -> None:
    """Let the lease's deadline pass without a heartbeat, and free its job as a sweep does.

    PostgreSQL's clock cannot move: the deadline moves into the past instead. The memory
    backend's clock moves past the deadline, and ``advance()`` frees the lease itself.
    """
    store = await s.open()
    if isinstance(store, MemoryStore):
        advance(s, max(lease.expires_at.timestamp() - store.clock.time(), 0.0) + 1.0)
        return
    pg = await pg_store(s)
    await pg.pool.execute(
        f"UPDATE {quote_ident(s.schema)}.jobs SET lease_until = now() - interval '1 second' WHERE id = $1",
        lease.job.id,
    )
    assert await pg.leases_release_expired(1000) == 1


async def lease_row(s: Scheduler, job_id: int) -> tuple[int | None, int, dt.datetime | None] | None:
    """(holder, attempt, lease deadline) of a live job, as the store has it; None once ended."""
    row = await (await pull_store(s)).lease_get(job_id)
    if row is None:
        return None
    until = row[LEASE_UNTIL]
    return row[HOLDER], row[ROW_ATTEMPT], None if until is None else dt.datetime.fromtimestamp(until, dt.UTC)


async def test_a_blocking_dequeue_is_woken_by_a_schedule_from_another_scheduler(
    s: Scheduler, other: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the notification the dequeue would look again only after an hour: the test's
    # deadline proves the wake-up came from the schedule.
    monkeypatch.setattr(consumer_module, "RECHECK_S", 3600.0)
    got: list[int] = []

    async def consume() -> None:
        lease = await s.dequeue(queues=["q"], timeout=None)
        assert lease is not None
        got.append(lease.job.id)
        await lease.finish({"ok": True})

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await until(lambda: bool(s._consumer and s._consumer._wakeups._sub))
            assert await (await pull_store(s)).queues_with_jobs() == []
            job_id = await other.schedule("anything", {"n": 1}, queue="q")
    assert got == [job_id]
    record = await s.get_job(job_id)
    assert (record.state, record.result) == (JobState.SUCCEEDED, {"ok": True})


async def test_dequeue_returns_none_at_its_timeout_and_zero_tries_once(s: Scheduler) -> None:
    with anyio.fail_after(WAIT):
        assert await s.dequeue(queues=["empty"], timeout=0.2) is None
        assert await s.dequeue(timeout=0) is None
        job_id = await s.schedule("t", None, queue="empty")
        lease = await s.dequeue(queues=["empty"], timeout=0)
    assert lease is not None
    assert lease.job.id == job_id


async def test_dequeue_filters_by_type_and_without_queues_looks_in_every_queue(s: Scheduler) -> None:
    a = await s.schedule("a", None, queue="q1")
    b = await s.schedule("b", None, queue="q2")
    assert await (await pull_store(s)).queues_with_jobs() == ["q1", "q2"]
    lease = await s.dequeue(types=["b"], timeout=0)
    assert lease is not None
    assert (lease.job.id, lease.job.type, lease.job.queue) == (b, "b", "q2")
    assert await s.dequeue(types=["b"], timeout=0) is None
    skipped = await s.dequeue(types=["a"], queues=["q1"], timeout=0)  # still there for its type
    assert skipped is not None
    assert skipped.job.id == a


async def test_dequeue_takes_due_jobs_only_and_a_delayed_one_once_due(s: Scheduler) -> None:
    later = await s.schedule("t", None, queue="q", run_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert await s.dequeue(queues=["q"], timeout=0) is None
    assert (await s.get_job(later)).state is JobState.SCHEDULED
    now = await s.schedule("t", None, queue="q")
    lease = await s.dequeue(queues=["q"], timeout=0)
    assert lease is not None
    assert lease.job.id == now


async def test_claim_takes_up_to_n_in_priority_order_and_finishing_them_at_once_ends_them_all(
    s: Scheduler,
) -> None:
    low = [await s.schedule("t", {"i": i}, queue="q", priority=5) for i in range(3)]
    high = [await s.schedule("t", {"i": i}, queue="q", priority=-5) for i in range(2)]
    leases = await s.claim(4, queues=["q"])
    assert [lease.job.id for lease in leases] == high + low[:2]
    assert all(lease.attempt == 1 for lease in leases)
    assert len({lease.owner for lease in leases}) == 1
    await asyncio.gather(*(lease.finish(lease.job.id) for lease in leases))
    for lease in leases:
        record = await s.get_job(lease.job.id)
        assert (record.state, record.result) == (JobState.SUCCEEDED, lease.job.id)
        assert [(r.attempt, r.outcome.value, r.worker_id) for r in record.runs] == [
            (1, "succeeded", lease.owner)
        ]
    rest = await s.claim(10, queues=["q"])
    assert [lease.job.id for lease in rest] == [low[2]]
    assert await s.claim(10, queues=["q"]) == []


async def test_a_lease_is_held_by_its_consumer_until_its_deadline(s: Scheduler) -> None:
    job_id = await s.schedule("t", None, queue="q")
    lease = await s.dequeue(queues=["q"], timeout=0, lease=60)
    assert lease is not None
    assert (await s.get_job(job_id)).state is JobState.RUNNING
    held = await lease_row(s, job_id)
    assert held is not None
    assert held[:2] == (lease.owner, 1)
    assert held[2] == lease.expires_at
    assert dt.timedelta(seconds=50) < lease.expires_at - dt.datetime.now(dt.UTC) <= dt.timedelta(seconds=61)
    assert lease.token == f"{job_id}-1-{lease.owner}"


async def test_finish_after_the_lease_expired_and_was_leased_again_raises_lease_lost(
    s: Scheduler, other: Scheduler
) -> None:
    job_id = await s.schedule("t", None, queue="q")
    first = await s.dequeue(queues=["q"], timeout=0)
    assert first is not None
    await expire(s, first)
    second = await other.dequeue(queues=["q"], timeout=0)
    assert second is not None
    assert (second.job.id, second.attempt) == (job_id, 2)
    assert second.owner != first.owner
    before = await lease_row(s, job_id)
    with pytest.raises(LeaseLost) as lost:
        await first.finish("stale")
    assert (lost.value.job_id, lost.value.state, lost.value.token) == (job_id, "running", first.token)
    assert isinstance(lost.value, NotRunning)  # osbuild's ErrNotRunning, for this lease
    assert "held by worker" in str(lost.value.__notes__)
    with pytest.raises(LeaseLost):
        await first.heartbeat()
    with pytest.raises(LeaseLost):
        await first.fail("stale")
    with pytest.raises(LeaseLost):
        await first.requeue()
    assert await lease_row(s, job_id) == before  # unchanged
    await second.finish("fresh")
    with pytest.raises(NotRunning) as ended:  # finished elsewhere: ended for this lease too
        await second.finish("again")
    assert ended.value.state == "ended"
    record = await s.get_job(job_id)
    assert record.result == "fresh"
    assert [(r.attempt, r.outcome.value) for r in record.runs] == [(1, "crashed"), (2, "succeeded")]


async def test_an_expired_lease_frees_the_job_with_a_crashed_run_and_counts_the_attempt(s: Scheduler) -> None:
    job_id = await s.schedule("t", None, queue="q")
    lease = await s.dequeue(queues=["q"], timeout=0)
    assert lease is not None
    await expire(s, lease)
    assert await lease_row(s, job_id) == (None, 1, None)
    record = await s.get_job(job_id)
    assert (record.state, record.attempts) == (JobState.PENDING, 1)
    [run] = record.runs
    assert (run.outcome.value, run.worker_id) == ("crashed", lease.owner)
    assert f"the lease of pull consumer {lease.owner} expired" in (run.error or "")
    assert "expired" in (record.last_error or "")
    again = await s.dequeue(queues=["q"], timeout=0)  # the same consumer takes it again at once
    assert again is not None
    assert (again.job.id, again.attempt) == (job_id, 2)


async def test_a_heartbeat_extends_the_lease_and_reports_a_cancel(s: Scheduler) -> None:
    job_id = await s.schedule("t", None, queue="q")
    lease = await s.dequeue(queues=["q"], timeout=0, lease=5)
    assert lease is not None
    first = lease.expires_at
    later = await lease.heartbeat(600)
    assert later > first + dt.timedelta(seconds=500)
    assert later == lease.expires_at
    held = await lease_row(s, job_id)
    assert held is not None
    assert held[2] == later
    await s.cancel(job_id)
    with pytest.raises(JobCancelled):
        await lease.heartbeat()
    assert await lease.fail("stopped") is None
    record = await s.get_job(job_id)
    assert record.state is JobState.CANCELLED
    assert record.runs[-1].error == "stopped"


async def test_fail_retries_by_the_types_filter_or_retry_at_and_is_final_otherwise(s: Scheduler) -> None:
    s.declare("flaky", retry=LinearBackoff(max_retries=2, base_delay=60))

    a = await s.schedule("flaky", None, queue="q")
    lease = await s.dequeue(types=["flaky"], timeout=0)
    assert lease is not None
    at = await lease.fail(RuntimeError("boom"))
    assert at is not None
    record = await s.get_job(a)
    assert (record.state, record.errors) == (JobState.SCHEDULED, 1)
    [run] = record.runs
    assert (run.outcome.value, run.retry_at is not None) == ("failed", True)
    assert "RuntimeError: boom" in (run.error or "")

    b = await s.schedule("unregistered", None, queue="q")
    lease = await s.dequeue(types=["unregistered"], timeout=0)
    assert lease is not None
    assert await lease.fail("plain text error") is None  # no filter: final
    record = await s.get_job(b)
    assert record.state is JobState.FAILED
    assert record.runs[-1].error == "plain text error"

    c = await s.schedule("unregistered", None, queue="q")
    lease = await s.dequeue(types=["unregistered"], timeout=0)
    assert lease is not None
    when = await lease.fail("later", retry_at=dt.timedelta(hours=1))
    assert when is not None
    assert when > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=50)
    record = await s.get_job(c)
    assert (record.state, record.errors, record.run_at) == (JobState.SCHEDULED, 1, when)
    assert await lease_row(s, c) == (None, 1, None)


async def test_requeue_puts_the_job_back_and_ends_it_at_its_last_attempt(s: Scheduler) -> None:
    s.declare("twice", max_attempts=2)
    job_id = await s.schedule("twice", None, queue="q")
    lease = await s.dequeue(queues=["q"], timeout=0)
    assert lease is not None
    assert await lease.requeue() is True
    assert await lease_row(s, job_id) == (None, 1, None)
    again = await s.dequeue(queues=["q"], timeout=0)
    assert again is not None
    assert again.attempt == 2
    assert await again.requeue() is False
    record = await s.get_job(job_id)
    assert record.state is JobState.FAILED
    assert [r.outcome.value for r in record.runs] == ["interrupted", "failed"]


async def test_a_lease_is_finished_once(s: Scheduler) -> None:
    job_id = await s.schedule("t", None, queue="q")
    lease = await s.dequeue(queues=["q"], timeout=0)
    assert lease is not None
    results = await asyncio.gather(lease.finish(1), lease.finish(2), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["LeaseLost", "NoneType"]
    record = await s.get_job(job_id)
    assert record.result in (1, 2)
    assert len(record.runs) == 1


async def test_dequeue_by_id_leases_a_pending_job_and_refuses_others(s: Scheduler, other: Scheduler) -> None:
    later = await s.schedule("t", None, queue="q", run_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    lease = await s.dequeue_by_id(later)  # scheduled for later: taken early
    assert (lease.job.id, lease.attempt) == (later, 1)
    with pytest.raises(NotPending) as running:
        await other.dequeue_by_id(later)
    assert running.value.state == "running"
    await lease.finish()
    with pytest.raises(NotPending) as ended:
        await other.dequeue_by_id(later)
    assert ended.value.state == "succeeded"

    parked = await s.schedule("t", None, queue="q")
    await s.suspend(parked)
    with pytest.raises(NotPending) as suspended:
        await s.dequeue_by_id(parked)
    assert suspended.value.state == "suspended"
    blocked = await s.schedule("t", None, queue="q", depends_on=[parked])
    with pytest.raises(NotPending) as waiting:
        await s.dequeue_by_id(blocked)
    assert waiting.value.state == "waiting"
    with pytest.raises(JobNotFound):
        await s.dequeue_by_id(999_999)


async def test_a_token_acts_on_its_lease_from_another_scheduler(s: Scheduler, other: Scheduler) -> None:
    job_id = await s.schedule("t", None, queue="q")
    lease = await s.dequeue(queues=["q"], timeout=0)
    assert lease is not None
    same = await other.get_lease(lease.token)
    assert (same.job.id, same.attempt, same.owner, same.token) == (job_id, 1, lease.owner, lease.token)
    assert same.expires_at == lease.expires_at
    await same.heartbeat(120)
    await same.finish({"by": "other"})
    with pytest.raises(LeaseLost):
        await other.get_lease(lease.token)
    with pytest.raises(LeaseLost):
        await s.get_lease(f"{job_id}-2-{lease.owner}")
    record = await s.get_job(job_id)
    assert record.result == {"by": "other"}
    assert [r.worker_id for r in record.runs] == [lease.owner]


async def test_a_cancelled_or_exhausted_job_is_ended_at_the_claim_not_handed_out(
    s: Scheduler, other: Scheduler
) -> None:
    for peer in (s, other):
        peer.declare("once", max_attempts=1)
    job_id = await s.schedule("once", None, queue="q")
    lease = await s.dequeue(queues=["q"], timeout=0)
    assert lease is not None
    await expire(s, lease)
    assert await other.dequeue(queues=["q"], timeout=0) is None  # claimed, then refused
    record = await s.get_job(job_id)
    assert record.state is JobState.FAILED
    assert [r.outcome.value for r in record.runs] == ["crashed", "failed"]
    assert "gave up" in (record.runs[-1].error or "")

    cancelled = await s.schedule("t", None, queue="q")
    lease = await s.dequeue(queues=["q"], timeout=0)
    assert lease is not None
    await s.cancel(cancelled)
    await expire(s, lease)
    assert await other.dequeue(queues=["q"], timeout=0) is None
    assert (await s.get_job(cancelled)).state is JobState.CANCELLED


async def test_a_result_that_cannot_be_encoded_writes_nothing_and_the_lease_still_holds(s: Scheduler) -> None:
    job_id = await s.schedule("t", None, queue="q")
    lease = await s.dequeue(queues=["q"], timeout=0)
    assert lease is not None
    with pytest.raises(ParamsEncodeError):
        await lease.finish(object())
    assert (await s.get_job(job_id)).state is JobState.RUNNING
    await lease.finish([1, 2])
    assert (await s.get_job(job_id)).result == [1, 2]


async def test_a_pull_consumer_is_listed_and_removing_it_releases_its_leases(s: Scheduler) -> None:
    job_id = await s.schedule("t", None, queue="q")
    lease = await s.dequeue(queues=["q"], timeout=0)
    assert lease is not None
    [info] = [w for w in await s.list_workers() if w.id == lease.owner]
    assert (info.kind, info.concurrency, info.jobs_held, info.queues) == ("pull", None, 1, ("q",))
    with pytest.raises(WorkerHasActiveJobs):
        await s.remove_worker(lease.owner)
    assert await s.remove_worker(lease.owner, force=True) == 1
    assert await lease_row(s, job_id) == (None, 1, None)
    assert lease.owner not in [w.id for w in await s.list_workers()]
    record = await s.get_job(job_id)
    assert (record.state, [r.outcome.value for r in record.runs]) == (JobState.PENDING, ["crashed"])
    with pytest.raises(LeaseLost):
        await lease.finish()
    again = await s.dequeue(queues=["q"], timeout=0)  # registers a new consumer
    assert again is not None
    assert (again.attempt, again.owner != lease.owner) == (2, True)


async def test_a_lease_carries_the_jobs_tenant_through_expiry_and_finish(s: Scheduler) -> None:
    job_id = await s.schedule("t", None, queue="q", tenant="acme")
    lease = await s.dequeue(queues=["q"], timeout=0)
    assert lease is not None
    assert lease.job.tenant == "acme"
    await expire(s, lease)
    again = await s.dequeue_by_id(job_id)
    assert again.job.tenant == "acme"
    await again.finish()
    record = await s.get_job(job_id)
    assert (record.state, record.tenant, len(record.runs)) == (JobState.SUCCEEDED, "acme", 2)
    assert [j.id for j in (await s.list_jobs(tenant="acme")).items] == [job_id]


async def test_bad_arguments_are_refused_before_anything_is_written(s: Scheduler) -> None:
    job_id = await s.schedule("t", None, queue="q")
    for call in (
        lambda: s.claim(0),
        lambda: s.claim(1001),
        lambda: s.claim(cast("int", True)),
        lambda: s.claim(1, types=cast("list[str]", "t")),
        lambda: s.dequeue(types=cast("list[str]", "t"), timeout=0),
        lambda: s.dequeue(queues=[], timeout=0),
        lambda: s.dequeue(queues=[""], timeout=0),
        lambda: s.dequeue(timeout=-1),
        lambda: s.dequeue(lease=0, timeout=0),
        lambda: s.dequeue(lease=86401, timeout=0),
        lambda: s.dequeue_by_id(job_id, lease=-1),
        lambda: s.get_lease("1-2"),
        lambda: s.get_lease("1-0-1"),
        lambda: s.get_lease("99999999999999999999-1-1"),
    ):
        with pytest.raises(ConfigError):
            await call()
    assert s._consumer is None
    assert [w.kind for w in await s.list_workers()] == []
    assert (await s.get_job(job_id)).state is JobState.PENDING


async def test_a_job_that_a_worker_claims_of_a_declared_type_fails_without_a_handler(s: Scheduler) -> None:
    job_id = await s.schedule("t", None)
    async with anyio.create_task_group() as tg:
        worker = s.worker(poll_interval=3600)
        await tg.start(worker.run)
        try:
            await until(lambda: _finished(s, job_id))
        finally:
            await worker.shutdown()
    record = await s.get_job(job_id)
    assert record.state is JobState.FAILED
    assert "declared for pull consumers" in (record.runs[-1].error or "")


async def _finished(s: Scheduler, job_id: int) -> bool:
    return (await s.get_job(job_id)).state.finished


async def test_release_gives_an_unstarted_job_back_without_counting_the_attempt(s: Scheduler) -> None:
    s.declare("once", max_attempts=1)
    job_id = await s.schedule("once", None, queue="q")
    lease = await s.dequeue(queues=["q"], timeout=0)
    assert lease is not None
    await lease.release()
    assert await lease_row(s, job_id) == (None, 1, None)
    with pytest.raises(LeaseLost):
        await lease.finish()
    again = await s.dequeue(queues=["q"], timeout=0)  # not refused: the release did not count
    assert again is not None
    assert again.attempt == 2
    await again.finish("done")
    record = await s.get_job(job_id)
    assert (record.state, record.result) == (JobState.SUCCEEDED, "done")
    assert [r.outcome.value for r in record.runs] == ["snoozed", "succeeded"]


async def test_a_limited_queue_is_refused_to_pull_calls_and_left_out_without_queues(s: Scheduler) -> None:
    await s.set_queue_limit("capped", concurrency=1)
    capped = await s.schedule("t", None, queue="capped")
    free = await s.schedule("t", None, queue="free")
    with pytest.raises(ConfigError, match="capped"):
        await s.claim(5, queues=["capped", "free"])
    with pytest.raises(ConfigError, match="capped"):
        await s.dequeue_by_id(capped)
    assert await lease_row(s, free) == (None, 0, None)  # the refused claim took nothing
    lease = await s.dequeue(timeout=0)  # every queue: the limited one is left out
    assert lease is not None
    assert lease.job.id == free
    assert await s.dequeue(timeout=0) is None
    assert (await s.get_job(capped)).state is JobState.PENDING


async def test_a_waiting_dequeue_does_not_spin_on_a_due_job_of_another_type(
    s: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    await s.schedule("b", None, queue="q", run_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    store = await pull_store(s)
    claims = 0
    real = type(store).lease_claim_many

    async def counting(self: PullStore, *args: object) -> object:
        nonlocal claims
        claims += 1
        return await real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(type(store), "lease_claim_many", counting)
    monkeypatch.setattr(consumer_module, "RECHECK_S", 3600.0)
    with anyio.fail_after(WAIT):
        assert await s.dequeue(types=["a"], queues=["q"], timeout=0.5) is None
    assert claims <= 2  # a claim, asleep until the timeout, a last claim: no job of type "a" is due


async def test_finishes_arriving_while_one_is_written_are_written_by_their_own_callers(
    s: Scheduler,
) -> None:
    ids = [await s.schedule("t", {"i": i}, queue="q") for i in range(30)]
    leases = await s.claim(30, queues=["q"])
    assert [lease.job.id for lease in leases] == ids

    async def finish_later(lease: Lease, delay_ticks: int) -> None:
        for _ in range(delay_ticks):
            await anyio.lowlevel.checkpoint()
        await lease.finish(lease.job.id)

    with anyio.fail_after(WAIT):
        await asyncio.gather(*(finish_later(lease, i % 7) for i, lease in enumerate(leases)))
    for job_id in ids:
        record = await s.get_job(job_id)
        assert (record.state, record.result) == (JobState.SUCCEEDED, job_id)
