"""Retention on both backends: whole days of runs go, failed jobs' final runs stay longer,
and a failed run goes with the later run of its job (a job retried by hand).

The round is run with a ``now`` weeks ahead, so that today's runs are the expired ones:
on PostgreSQL today's partitions are dropped, on the memory backend today's runs removed.
"""

from __future__ import annotations

import datetime as dt

import pytest

from pgqueue import JobNotFound, JobState, Scheduler
from pgqueue.maintenance.retention import Retention
from tests.contract._helpers import raising, run_until_ended

DAY = dt.timedelta(days=1)


async def test_prune_keeps_failed_jobs_longer_and_forgets_a_retried_failure(
    backend_scheduler: Scheduler,
) -> None:
    s = backend_scheduler
    s.register("ok", lambda job: None)
    s.register("boom", raising(ValueError, "no"))
    flaky_runs: list[int] = []

    async def flaky(job: object) -> None:
        flaky_runs.append(1)
        if len(flaky_runs) == 1:
            raise ValueError("first time")

    s.register("flaky", flaky)
    ok, boom, again = (
        int(await s.schedule("ok")),
        int(await s.schedule("boom")),
        int(await s.schedule("flaky")),
    )
    await run_until_ended(s, ok, boom, again)
    assert (await s.get_job(again)).state is JobState.FAILED
    await s.retry(again)
    await run_until_ended(s, again)
    assert [r.outcome.value for r in (await s.get_job(again)).runs] == ["failed", "succeeded"]

    retention = Retention(await s.open(), dt.timedelta(days=14), dt.timedelta(days=30))
    now = dt.datetime.now(dt.UTC)
    first = await retention.run_once(now + 20 * DAY)
    assert first.partitions_dropped
    assert all(p.startswith("job_runs_done_p") for p in first.partitions_dropped)
    assert first.rows_deleted == 1  # the retried job's failed run, with its success
    for gone in (ok, again):
        with pytest.raises(JobNotFound):
            await s.get_job(gone)
    assert (await s.get_job(boom)).state is JobState.FAILED
    assert [r.id for r in (await s.list_jobs(state=JobState.FAILED)).items] == [boom]

    assert (await retention.run_once(now + 20 * DAY)).partitions_dropped == ()  # nothing left to do
    second = await retention.run_once(now + 40 * DAY)
    assert any(p.startswith("job_runs_failed_p") for p in second.partitions_dropped)
    with pytest.raises(JobNotFound):
        await s.get_job(boom)


async def test_prune_with_defaults_keeps_recent_runs(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("ok", lambda job: None)
    job = int(await s.schedule("ok"))
    await run_until_ended(s, job)
    result = await s.prune()
    assert result.partitions_dropped == ()
    assert result.rows_deleted == 0
    assert result.done_before <= dt.datetime.now(dt.UTC) - dt.timedelta(days=14)
    assert result.failed_before <= dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    assert (await s.get_job(job)).state is JobState.SUCCEEDED
    dry = await s.prune(dt.timedelta(hours=1), dry_run=True)
    assert dry.dry_run
    assert (await s.get_job(job)).state is JobState.SUCCEEDED
