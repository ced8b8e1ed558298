"""Retries end to end: run rows numbered 1..n, delays that follow the filter."""

from __future__ import annotations

import datetime as dt
import itertools

import asyncpg
import pytest

from pgqueue import ErrorWithRetry, ExponentialBackoff, Job, LinearBackoff, Scheduler
from tests._support import Counter, hot_count, running, runs, wait

pytestmark = pytest.mark.pg


async def test_linear_backoff_end_to_end(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    """max_retries=3, base 0.2 s: four runs, gaps of 0.2, 0.4, 0.6 s, then final failure.

    The worker polls every 60 s, so only its due-time timer can start the retries on time.
    """
    done = Counter(4)

    @scheduler.job("flaky", retry=LinearBackoff(3, 0.2))
    async def flaky(job: Job) -> None:
        done.hit((job.attempt, job.errors, job.last_error))
        raise ValueError(f"failure {job.attempt}")

    job_id = await scheduler.schedule("flaky")
    async with running(scheduler.worker(poll_interval=60)):
        await wait(done.done)
    assert [c[:2] for c in done.calls] == [(1, 0), (2, 1), (3, 2), (4, 3)]
    assert done.calls[0][2] is None
    assert "ValueError: failure 3" in done.calls[3][2]
    rows = await runs(db, scheduler.schema, job_id)
    assert [r["attempt"] for r in rows] == [1, 2, 3, 4]
    assert {r["outcome"] for r in rows} == {"failed"}
    assert all(r["retry_at"] is not None for r in rows[:3])
    assert rows[3]["retry_at"] is None
    assert "Traceback" in rows[0]["error"]
    assert "ValueError: failure 1" in rows[0]["error"]
    for n, (prev, nxt) in enumerate(itertools.pairwise(rows), start=1):
        # The delay is added to the database's now() when the failure is written, which is
        # after the run finished: a lower bound. How much later is the machine's business.
        assert prev["retry_at"] - prev["finished_at"] >= dt.timedelta(seconds=0.2 * n)
        assert nxt["started_at"] >= prev["retry_at"]  # never run before the filter's time
    assert await hot_count(db, scheduler.schema) == 0


async def test_error_with_retry_raised_or_returned(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    done = Counter(3)

    @scheduler.job("snooze")
    async def snooze(job: Job) -> object:
        done.hit(job.attempt)
        if job.attempt == 1:
            raise ErrorWithRetry(RuntimeError("not yet"), dt.timedelta(seconds=0))
        if job.attempt == 2:
            return ErrorWithRetry(RuntimeError("still not"), dt.datetime.now(dt.UTC))
        return "ok"

    job_id = await scheduler.schedule("snooze")
    async with running(scheduler.worker()):
        await wait(done.done)
    rows = await runs(db, scheduler.schema, job_id)
    assert [(r["attempt"], r["outcome"]) for r in rows] == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    assert "RuntimeError: not yet" in rows[0]["error"]
    assert rows[2]["result"] == '"ok"'


async def test_retry_on_filters_by_exception_type(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    done = Counter(3)

    @scheduler.job("net", retry=LinearBackoff(5, 0, retry_on=(TimeoutError,)))
    async def net(job: Job) -> None:
        done.hit(job.attempt)
        if job.attempt < 3:
            raise TimeoutError("slow peer")
        raise KeyError("bug")  # not retryable: final at once

    job_id = await scheduler.schedule("net")
    async with running(scheduler.worker()):
        await wait(done.done)
    rows = await runs(db, scheduler.schema, job_id)
    assert [r["attempt"] for r in rows] == [1, 2, 3]
    assert rows[2]["retry_at"] is None
    assert "KeyError" in rows[2]["error"]


async def test_exponential_backoff_end_to_end(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    done = Counter(3)

    @scheduler.job("exp", retry=ExponentialBackoff(2, base=0.1, cap=10, jitter=0))
    async def exp(job: Job) -> None:
        done.hit(job.attempt)
        raise RuntimeError("x")

    job_id = await scheduler.schedule("exp")
    async with running(scheduler.worker(poll_interval=60)):
        await wait(done.done)
    rows = await runs(db, scheduler.schema, job_id)
    gaps = [(r["retry_at"] - r["finished_at"]).total_seconds() for r in rows[:2]]
    # retry_at is the database's now() at the flush plus the delay, so the gap is the delay
    # plus the flush's lag: exact from below, loose from above (a loaded machine lags).
    assert 0.1 <= gaps[0] < 0.1 + 0.5
    assert 0.2 <= gaps[1] < 0.2 + 0.5
    assert rows[2]["retry_at"] is None


async def test_unencodable_result_is_a_failed_run(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    done = Counter(1)

    @scheduler.job("weird")
    async def weird(job: Job) -> object:
        done.hit(1)
        return object()

    job_id = await scheduler.schedule("weird")
    async with running(scheduler.worker()):
        await wait(done.done)
    [run] = await runs(db, scheduler.schema, job_id)
    assert run["outcome"] == "failed"
    assert "cannot be encoded as JSON" in run["error"]
