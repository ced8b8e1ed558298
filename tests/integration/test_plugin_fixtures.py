"""The pytest plugin's fixtures, as an application's tests use them without ``pgqueue_app``."""

from __future__ import annotations

import pytest

from pgqueue import Job, JobState, Scheduler
from pgqueue.testing import drain

pytestmark = pytest.mark.pg


async def test_the_pg_fixture_gives_a_migrated_schema_of_its_own(pgqueue_pg_scheduler: Scheduler) -> None:
    s = pgqueue_pg_scheduler
    assert s.schema.startswith("pgqueue_test_")

    @s.job("t")
    async def t(job: Job) -> int:
        return 3

    job_id = await s.schedule("t", None)
    [run] = await drain(s)
    assert (run.job_id, run.result) == (job_id, 3)
    assert (await s.get_job(job_id)).state is JobState.SUCCEEDED


def test_the_memory_fixture_is_a_fresh_in_memory_scheduler(pgqueue_scheduler: Scheduler) -> None:
    assert pgqueue_scheduler.schema == "memory"
    assert len(pgqueue_scheduler.registry) == 0
