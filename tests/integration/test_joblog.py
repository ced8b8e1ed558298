"""job.log on PostgreSQL: the lines ride in the flush's one statement, into job_runs.log."""

from __future__ import annotations

import hashlib
import time

import asyncpg
import orjson
import pytest

from pgqueue import Job, LinearBackoff, Scheduler
from pgqueue.store import FinalizeResult, FlushBatch, Held, NewJobs
from pgqueue.store.postgres.queries import QUERIES
from tests._support import StoreWrapper, claim_records, pg_store, running, until, worker_on

pytestmark = pytest.mark.pg

# job_finalize_many is the worker's write path: a change to it is re-benchmarked.
FINALIZE_SHA256 = "b1ea6a156566e7c353bcde592764133001f371c750043bb4d626f96983960974"


def test_the_finalize_statement_is_pinned() -> None:
    assert hashlib.sha256(QUERIES.job_finalize_many.encode()).hexdigest() == FINALIZE_SHA256


async def test_finalize_stores_the_lines_of_ended_and_put_back_runs(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    schema = scheduler.schema
    store = await pg_store(scheduler)
    wid, _ = await store.worker_register(["q"])
    ids = [await store.job_insert(None, NewJobs("q", "t"), "null") for _ in range(5)]
    rows = {r["id"]: r for r in await claim_records(store, ["q"], 10, wid)}
    a, b, c, d, e = ids
    lines = '[{"at":"2030-01-01T00:00:00+00:00","level":"info","msg":"hi","n":1}]'
    t0 = time.time()
    batch = FlushBatch(end_ids=[a, b, c], end_attempts=[1, 1, 1], end_started=[t0] * 3, end_finished=[t0] * 3)
    batch.end_lines = [None, lines]  # shorter than the ids: padded with NULL, as the others
    batch.back_ids, batch.back_attempts, batch.back_started, batch.back_finished = (
        [d, e],
        [1, 1],
        [t0] * 2,
        [t0] * 2,
    )
    batch.back_outcomes, batch.back_errors = ["failed", "failed"], ["boom", "boom"]
    batch.back_due_at = [rows[d]["run_at"], rows[e]["run_at"]]
    batch.back_retry_at, batch.back_delay, batch.back_error_inc = [None, None], [30.0, 30.0], [1, 1]
    batch.back_log, batch.back_checkpoint = [True, True], [None, None]
    batch.back_lines = [lines]
    res = await store.job_finalize_many(wid, batch)
    assert (set(res.ended), set(res.put_back), res.runs_logged) == ({a, b, c}, {d, e}, 5)
    stored = {r[0]: r[1] for r in await db.fetch(f'SELECT job_id, log::text FROM "{schema}".job_runs')}
    assert stored == {a: None, b: lines, c: None, d: lines, e: None}


class _Recorder:
    """Keeps every batch the worker's flusher hands the store."""

    def __init__(self, inner: StoreWrapper) -> None:
        self.inner = inner
        self.batches: list[FlushBatch] = []

    async def job_finalize_many(
        self, worker_id: int, batch: FlushBatch, held: Held | None = None, *, clock_offset: float = 0.0
    ) -> FinalizeResult:
        self.batches.append(batch)
        return await self.inner.inner.job_finalize_many(worker_id, batch, held, clock_offset=clock_offset)


async def test_a_worker_writes_the_lines_with_the_run(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    """The lines travel in the finalize batch (the flush's single statement), and a run that
    wrote none leaves the column NULL."""
    schema = scheduler.schema
    s = scheduler

    @s.job("logs", retry=LinearBackoff(max_retries=1, base_delay=0))
    async def logs(job: Job) -> None:
        job.log.info("run", attempt=job.attempt)
        if job.attempt == 1:
            raise ValueError("once")

    @s.job("quiet")
    async def quiet(job: Job) -> None:
        return None

    store = StoreWrapper(await pg_store(s))
    recorder = _Recorder(store)
    store.override("job_finalize_many", recorder.job_finalize_many)
    logged_id, quiet_id = await s.schedule("logs"), await s.schedule("quiet")

    async def both_ended() -> bool:
        return bool(await db.fetchval(f'SELECT count(*) = 3 FROM "{schema}".job_runs'))

    async with running(worker_on(s, store, poll_interval=3600)):
        await until(both_ended)
    runs = await db.fetch(
        f'SELECT job_id, attempt, log::text AS log FROM "{schema}".job_runs ORDER BY job_id, attempt'
    )
    by_run = {(r["job_id"], r["attempt"]): r["log"] for r in runs}
    assert by_run[quiet_id, 1] is None
    for attempt in (1, 2):
        [line] = orjson.loads(by_run[logged_id, attempt])
        assert (line["level"], line["msg"], line["attempt"]) == ("info", "run", attempt)
    sent = [text for b in recorder.batches for text in (*b.end_lines, *b.back_lines) if text is not None]
    assert sorted(sent) == sorted([by_run[logged_id, 1], by_run[logged_id, 2]])
