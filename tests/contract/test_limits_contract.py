"""Global queue limits on each backend: the API, and a real worker held to each limit."""

from __future__ import annotations

import datetime as dt

import anyio
import pytest

from pgqueue import ConfigError, Job, QueueLimit, RateLimit, Scheduler
from tests._support import Counter, fired, running, until, wait
from tests.contract._helpers import Hold, ended, noting

Q = "limited"


# -- the API -------------------------------------------------------------------------------


async def test_set_list_replace_and_remove(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    assert await s.list_queue_limits() == []
    first = await s.set_queue_limit(Q, concurrency=3, per_key=1, key="customer_id", rate=(100, 60))
    assert first.updated_at is not None
    assert (first.queue, first.concurrency, first.per_key, first.key) == (Q, 3, 1, "customer_id")
    assert first.rate == RateLimit(100, dt.timedelta(minutes=1))
    other = await s.set_queue_limit("b", rate=RateLimit(5, dt.timedelta(milliseconds=1500)))
    assert await s.list_queue_limits() == [other, first]  # by queue name
    # A set replaces the whole limit: what it does not name is gone.
    second = await s.set_queue_limit(Q, concurrency=5)
    assert (second.concurrency, second.per_key, second.key, second.rate) == (5, None, None, None)
    assert await s.list_queue_limits() == [other, second]
    assert await s.remove_queue_limit(Q) is True
    assert await s.remove_queue_limit(Q) is False
    assert await s.list_queue_limits() == [other]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "at least one of"),
        ({"concurrency": 0}, "concurrency must be an integer from 1"),
        ({"concurrency": 2**31}, "concurrency must be an integer from 1"),
        ({"concurrency": 2.0}, "concurrency must be an integer"),
        ({"concurrency": True}, "concurrency must be an integer"),
        ({"per_key": 1}, "per_key and key go together"),
        ({"key": "customer_id", "concurrency": 1}, "per_key and key go together"),
        ({"per_key": 0, "key": "c"}, "per_key must be an integer from 1"),
        ({"per_key": 1, "key": ""}, "key must be a non-empty string"),
        ({"rate": (0, 60)}, "rate count must be an integer from 1"),
        ({"rate": (5, 0)}, "rate period must be longer than 0"),
        ({"rate": (5, -1.0)}, "rate period must be longer than 0"),
        ({"rate": (5, float("nan"))}, "rate period must be longer than 0"),
        ({"rate": (5, dt.timedelta(0))}, "rate period must be longer than 0"),
        ({"rate": (5, "1m")}, "rate period must be a timedelta or a number"),
        ({"rate": 5}, "rate must be a RateLimit or a"),
        ({"rate": (5, 60, 1)}, "rate must be a RateLimit or a"),
    ],
)
async def test_bad_arguments_raise_config_error_and_write_nothing(
    backend_scheduler: Scheduler, kwargs: dict[str, object], message: str
) -> None:
    s = backend_scheduler
    with pytest.raises(ConfigError, match=message):
        await s.set_queue_limit(Q, **kwargs)  # type: ignore[arg-type]
    assert await s.list_queue_limits() == []


@pytest.mark.parametrize("queue", ["", "x" * 201, "a\x00b"])
async def test_a_bad_queue_name_raises_config_error(backend_scheduler: Scheduler, queue: str) -> None:
    s = backend_scheduler
    with pytest.raises(ConfigError, match="queue must be"):
        await s.set_queue_limit(queue, concurrency=1)
    with pytest.raises(ConfigError, match="queue must be"):
        await s.remove_queue_limit(queue)
    assert await s.list_queue_limits() == []


def test_a_rate_limit_checks_its_fields() -> None:
    with pytest.raises(ConfigError, match="rate period must be a timedelta"):
        RateLimit(1, 60)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="rate count"):
        RateLimit(0, dt.timedelta(seconds=1))
    assert QueueLimit("q", concurrency=1).rate is None


# -- a worker held to the limits ------------------------------------------------------------


async def test_a_concurrency_limit_holds_a_worker_with_more_runners(backend_scheduler: Scheduler) -> None:
    """Five jobs, a worker with ten runners, a limit of two: the worker leases two slots and
    prefetches its slots' share; two start, and the others wait in the worker for a slot."""
    s = backend_scheduler
    hold = Hold(runs=2)
    s.register("hold", hold.run, queue=Q)
    await s.set_queue_limit(Q, concurrency=2)
    ids = [await s.schedule("hold", {"i": i}) for i in range(5)]
    worker = s.worker([Q], concurrency=10, poll_interval=3600)
    async with running(worker):
        await wait(hold.started.done)
        stages = worker._stages
        assert stages is not None
        await until(lambda: len(stages.jobs) > 0)  # claimed, idle runners, and not started
        gate = stages.fetcher.gates[Q]
        assert (gate.size, gate.running) == (2, 2)
        assert gate.held == 2 + len(stages.jobs) <= gate.cap
        assert len(hold.started.calls) == 2
        hold.release()
        records = await ended(s, *ids)
    assert [r.state.value for r in records] == ["succeeded"] * 5


async def test_a_worker_gives_back_the_slots_it_does_not_use(backend_scheduler: Scheduler) -> None:
    """One worker holds both slots while it runs two jobs; once they end it keeps none, and a
    second worker (started later) gets them and runs the rest."""
    s = backend_scheduler
    hold = Hold(runs=2)
    s.register("hold", hold.run, queue=Q)
    await s.set_queue_limit(Q, concurrency=2)
    first_ids = [await s.schedule("hold", {"i": i}) for i in range(2)]
    first = s.worker([Q], concurrency=4, poll_interval=3600)
    async with running(first):
        await wait(hold.started.done)
        stages = first._stages
        assert stages is not None
        assert stages.fetcher.gates[Q].size == 2
        hold.release()
        await ended(s, *first_ids)
        await until(lambda: stages.fetcher.gates[Q].size == 0)  # nothing held: all went back
        done = Counter(4)
        s.register("count", noting(done, lambda job: job.id), queue=Q)
        await s.schedule_many("count", [{"i": i} for i in range(4)])
        async with running(s.worker([Q], concurrency=4, poll_interval=0.05)):
            await wait(done.done)


async def test_runs_never_exceed_the_limit(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    now = [0, 0]  # running, most at once
    done = Counter(30)

    @s.job("nap", queue=Q)
    async def nap(job: Job) -> None:
        now[0] += 1
        now[1] = max(now[1], now[0])
        await anyio.sleep(0.002)
        now[0] -= 1
        done.hit(job.id)

    await s.set_queue_limit(Q, concurrency=3)
    await s.schedule_many("nap", [{"i": i} for i in range(30)])
    async with running(s.worker([Q], concurrency=8, poll_interval=3600)):
        await wait(done.done)
    assert now[1] == 3


async def test_a_per_key_limit_runs_one_job_per_key_and_keyless_jobs_freely(
    backend_scheduler: Scheduler,
) -> None:
    s = backend_scheduler
    hold = Hold(runs=3)
    s.register("hold", hold.run, queue=Q)
    await s.set_queue_limit(Q, per_key=1, key="customer")
    ids = [
        await s.schedule("hold", params)
        for params in ({"customer": "a"}, {"customer": "a"}, {"customer": 7}, {"customer": 7}, {"other": 1})
    ]
    worker = s.worker([Q], concurrency=10, poll_interval=3600)
    async with running(worker):
        await wait(hold.started.done)
        seen = worker.claims
        await fired(worker.signals.claimed, seen + 2)
        assert sorted(hold.started.calls) == [ids[0], ids[2], ids[4]]  # one per key, and the keyless
        hold.release()
        await ended(s, *ids)
    assert sorted(hold.started.calls) == sorted(ids)


async def test_a_rate_limit_defers_the_starts_past_the_window(backend_scheduler: Scheduler) -> None:
    """Two starts per hour: of three jobs claimed in one go otherwise, two run and the third
    waits. Removing the limit lets it run at the worker's next claim."""
    s = backend_scheduler
    calls = Counter(2)
    s.register("t", noting(calls, lambda job: job.id), queue=Q)
    s.register("poke", lambda job: None, queue=Q)
    await s.set_queue_limit(Q, rate=(2, dt.timedelta(hours=1)))
    ids = [await s.schedule("t", {"i": i}) for i in range(3)]
    worker = s.worker([Q], concurrency=10, poll_interval=3600, heartbeat_interval=0.01)
    async with running(worker):
        await wait(calls.done)
        first_two = await ended(s, *ids[:2])
        assert [r.state.value for r in first_two] == ["succeeded", "succeeded"]
        assert (await s.get_job(ids[2])).attempts == 0
        assert await s.remove_queue_limit(Q)
        poke = await s.schedule("poke")  # a notification: the worker claims, and looks again
        await ended(s, ids[2], poke)
    assert len(calls.calls) == 3


async def test_a_backlog_behind_a_full_gate_leaves_room_for_other_queues(
    backend_scheduler: Scheduler,
) -> None:
    """A limit of one and fifty jobs, the first of which runs until released: the worker
    holds only its slot's share of the others, so another queue's jobs are still claimed and
    run while the limited queue waits."""
    s = backend_scheduler
    hold = Hold(runs=1)
    s.register("hold", hold.run, queue=Q)
    done = Counter(30)
    s.register("other", noting(done, lambda job: job.id), queue="other")
    await s.set_queue_limit(Q, concurrency=1)
    held = await s.schedule_many("hold", [{"i": i} for i in range(50)])
    async with running(s.worker([Q, "other"], concurrency=10, poll_interval=3600)):
        await wait(hold.started.done)
        await s.schedule_many("other", [{"i": i} for i in range(30)])
        await wait(done.done)
        assert len(hold.started.calls) == 1
        hold.release()
        records = await ended(s, *held)
    assert [r.state.value for r in records] == ["succeeded"] * 50
