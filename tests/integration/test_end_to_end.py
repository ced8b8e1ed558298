"""The core path on a real server: schedule → NOTIFY → claim → run → flush."""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time
from collections.abc import Awaitable, Callable

import anyio
import asyncpg
import pytest

from pgqueue import Job, Outcome, Scheduler, log_final_runs
from pgqueue._models import ShouldLogRun
from pgqueue.store import FlushBatch
from pgqueue.worker.results import RunResult
from tests._support import QUIET, Counter, hot_count, hot_empty, pg_store, running, runs, until, wait

pytestmark = pytest.mark.pg


async def test_immediate_job_end_to_end(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    seen = Counter(1)

    @scheduler.job("greet")
    async def greet(job: Job) -> dict[str, str]:
        seen.hit((job.id, job.params, job.attempt, job.queue))
        return {"hello": job.params["name"]}

    async with running(scheduler.worker(poll_interval=60)):
        job_id = await scheduler.schedule("greet", {"name": "ada"})
        await wait(seen.done)
    assert seen.calls == [(job_id, {"name": "ada"}, 1, "default")]
    [run] = await runs(db, scheduler.schema)
    assert run["job_id"] == job_id
    assert run["outcome"] == "succeeded"
    assert run["attempt"] == 1
    assert run["retry_at"] is None
    assert run["result"] == '{"hello":"ada"}'
    assert run["params"] == '{"name":"ada"}'
    assert run["started_at"] <= run["finished_at"]
    assert run["inserted_at"] <= run["started_at"]
    assert await hot_count(db, scheduler.schema) == 0


async def _due_check(db: asyncpg.Connection, schema: str, job_id: int) -> bool:
    """Whether the job is due by the database's clock (the one the claim goes by)."""
    due: bool = await db.fetchval(
        f'SELECT run_at <= clock_timestamp() FROM "{schema}".jobs WHERE id = $1', job_id
    )
    return due


async def test_delayed_job_runs_at_its_time(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    """Scheduled while the worker idles with a 60 s poll: only the due-time timer can run it
    before ``wait`` gives up (30 s). How late it runs is the benchmark's business."""
    started = Counter(1)
    due_when_run: list[bool] = []

    @scheduler.job("later")
    async def later(job: Job) -> None:
        due_when_run.append(await _due_check(db, scheduler.schema, job.id))
        started.hit(job.id)

    async with running(scheduler.worker(poll_interval=60)):
        run_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)
        job_id = await scheduler.schedule("later", run_at=run_at)
        await wait(started.done)
    assert started.calls == [job_id]  # ran exactly once
    assert due_when_run == [True]  # not before its time, by the database's clock
    [run] = await runs(db, scheduler.schema, job_id)
    assert run["run_at"] == run_at
    assert run["started_at"] >= run_at
    assert run["outcome"] == "succeeded"


async def test_delayed_job_known_at_start_runs_at_its_time(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """Scheduled before the worker starts: the worker learns the due time from the database."""
    started = Counter(1)
    due_when_run: list[bool] = []

    @scheduler.job("later")
    async def later(job: Job) -> None:
        due_when_run.append(await _due_check(db, scheduler.schema, job.id))
        started.hit(job.id)

    run_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.0)
    job_id = await scheduler.schedule("later", run_at=run_at)
    async with running(scheduler.worker(poll_interval=60)):
        await wait(started.done)
    assert started.calls == [job_id]
    assert due_when_run == [True]
    [run] = await runs(db, scheduler.schema, job_id)
    assert run["started_at"] >= run_at


async def _next_notification(dsn: str, channel: str, action: Callable[[], Awaitable[None]]) -> list[str]:
    """Payloads seen on ``channel`` until a marker notification arrives after ``action``."""
    seen: list[str] = []
    marker = anyio.Event()
    conn = await asyncpg.connect(dsn)

    def on_notify(_c: object, _p: int, _ch: str, payload: object) -> None:
        assert isinstance(payload, str)
        if payload == "marker":
            marker.set()
        else:
            seen.append(payload)

    await conn.add_listener(channel, on_notify)
    try:
        await action()
        # Notifications arrive in commit order: once the marker (committed after the action)
        # is here, any notification the action committed has arrived too.
        await conn.execute("SELECT pg_notify($1, 'marker')", channel)
        await wait(marker)
    finally:
        await conn.close()
    return seen


async def test_transactional_enqueue_rollback_leaves_no_job_and_no_wakeup(
    scheduler: Scheduler, db: asyncpg.Connection, dsn: str
) -> None:
    scheduler.register("noop", lambda job: None)
    store = await pg_store(scheduler)

    async def rolled_back() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            tx = conn.transaction()
            await tx.start()
            await scheduler.schedule("noop", {"x": 1}, conn=conn)
            await scheduler.schedule_many("noop", [{"x": 2}, {"x": 3}], conn=conn)
            await tx.rollback()
        finally:
            await conn.close()

    seen = await _next_notification(dsn, store.channel, rolled_back)
    assert seen == []
    assert await hot_count(db, scheduler.schema) == 0


async def test_transactional_enqueue_commit_runs(
    scheduler: Scheduler, db: asyncpg.Connection, dsn: str
) -> None:
    done = Counter(2)

    @scheduler.job("noop")
    async def noop(job: Job) -> None:
        done.hit(job.id)

    async with running(scheduler.worker(poll_interval=60)):
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                await conn.execute("CREATE TEMP TABLE app_rows (x int)")
                a = await scheduler.schedule("noop", conn=conn)
                [b] = await scheduler.schedule_many("noop", [None], conn=conn)
                # Not visible (and not notified) before commit:
                assert await hot_count(db, scheduler.schema) == 0
        finally:
            await conn.close()
        await wait(done.done)
    assert sorted(done.calls) == sorted([a, b])


async def test_scheduling_while_the_worker_is_busy(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    release = anyio.Event()
    started = Counter(2)
    finished = Counter(6)

    @scheduler.job("slow")
    async def slow(job: Job) -> None:
        started.hit(job.id)
        await release.wait()
        finished.hit(job.id)

    @scheduler.job("fast")
    async def fast(job: Job) -> None:
        finished.hit(job.id)

    async with running(scheduler.worker(concurrency=2, poll_interval=60)):
        await scheduler.schedule_many("slow", [1, 2])
        await wait(started.done)  # both runners are now busy
        more = await scheduler.schedule_many("fast", [1, 2, 3, 4])
        release.set()
        await wait(finished.done)
    assert set(more) <= set(finished.calls)
    assert len(await runs(db, scheduler.schema)) == 6


async def test_backlog_of_10000_runs_every_job_exactly_once(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    n = 10_000
    done = Counter(n)

    @scheduler.job("count")
    async def count(job: Job) -> None:
        done.hit(job.params)

    ids = await scheduler.schedule_many("count", range(n))
    assert len(ids) == n
    assert ids == sorted(ids)
    async with running(scheduler.worker(concurrency=20)):
        await wait(done.done)
    assert collections.Counter(done.calls) == collections.Counter(range(n))
    rows = await runs(db, scheduler.schema)
    assert len(rows) == n
    assert {r["job_id"] for r in rows} == set(ids)
    assert {(r["attempt"], r["outcome"]) for r in rows} == {(1, "succeeded")}
    assert await hot_count(db, scheduler.schema) == 0


@pytest.mark.parametrize("limit", [1, 7])
async def test_concurrency_never_exceeds_the_limit(scheduler: Scheduler, limit: int) -> None:
    active = 0
    peak = 0
    done = Counter(60)

    @scheduler.job("busy")
    async def busy(job: Job) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await anyio.sleep(0.002)
        active -= 1
        done.hit(job.id)

    await scheduler.schedule_many("busy", range(60))
    async with running(scheduler.worker(concurrency=limit)):
        await wait(done.done)
    assert peak == limit


async def test_shutdown_flushes_buffered_results(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    """With flush thresholds out of reach, only the shutdown flush can write these runs."""
    done = Counter(5)

    @scheduler.job("noop")
    async def noop(job: Job) -> None:
        done.hit(job.id)

    await scheduler.schedule_many("noop", range(5))
    worker = scheduler.worker(flush_max=1000, flush_age=3600)
    async with running(worker):
        await wait(done.done)
        assert await runs(db, scheduler.schema) == []  # still buffered
        assert await hot_count(db, scheduler.schema) == 5  # claimed, not yet finalized
    assert worker.flushes == 1
    assert len(await runs(db, scheduler.schema)) == 5
    assert await hot_count(db, scheduler.schema) == 0


class _MovedOn:
    """The real clocks, with the monotonic one moved ahead when the test says."""

    def __init__(self) -> None:
        self.ahead = 0.0
        self.time = time.time

    def monotonic(self) -> float:
        return time.monotonic() + self.ahead


async def test_an_idle_worker_writes_its_results_without_waiting_for_flush_age(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """Nothing left to run: the results go out at once, though the oldest is far from flush_age.

    The worker's start counts as an idle flush, so the clock is moved one flush_age past
    it first; the results' own age then stays an hour away. The runs end one by one: the
    first results wait for the last run (the worker is not idle before it), and one flush
    writes them all.
    """
    done = Counter(3)

    @scheduler.job("noop")
    async def noop(job: Job) -> None:
        await anyio.sleep(0.02 * job.params)  # the runs end one by one, while others still run
        done.hit(job.id)

    clock = _MovedOn()
    # No poll or heartbeat in the test's time: the last run's end is what makes it idle.
    worker = scheduler.worker(flush_max=1000, flush_age=3600, **QUIET)
    worker._clock = clock  # the test's clock, before the run builds its stages
    async with running(worker):
        clock.ahead = 3600.0
        await scheduler.schedule_many("noop", range(3))
        await wait(done.done)
        await until(lambda: _runs_written(db, scheduler.schema, 3))
        assert worker.flushes == 1
    assert await hot_count(db, scheduler.schema) == 0


async def _runs_written(db: asyncpg.Connection, schema: str, n: int) -> bool:
    return len(await runs(db, schema)) == n


async def test_unknown_type_fails_once_with_a_clear_error(
    dsn: str, scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """A job of a type this worker does not know ends failed, is logged, and is not retried."""
    other = Scheduler(dsn, schema=scheduler.schema)  # the worker's process: knows only "known"
    done = Counter(1)

    @other.job("known")
    async def known(job: Job) -> None:
        done.hit(job.id)

    scheduler.register("mystery", lambda job: None)
    try:
        mystery = await scheduler.schedule("mystery", {"a": 1})
        await other.schedule("known")  # claimed after "mystery" (id order)
        async with running(other.worker(queues=["default"], poll_interval=60)):
            await wait(done.done)
    finally:
        await other.close()
    [run] = await runs(db, scheduler.schema, mystery)
    assert run["outcome"] == Outcome.FAILED
    assert run["retry_at"] is None
    assert "'mystery' is not registered in this worker" in run["error"]
    assert await hot_count(db, scheduler.schema) == 0


async def test_sync_handler_runs_in_a_thread(scheduler: Scheduler) -> None:
    done = Counter(1)

    @scheduler.job("blocking")
    def blocking(job: Job) -> int:
        time.sleep(0.01)  # would block the event loop if run on it
        anyio.from_thread.run_sync(done.hit, threading.get_ident())
        return 42

    async with running(scheduler.worker()):
        await scheduler.schedule("blocking")
        await wait(done.done)
    assert done.calls[0] != threading.get_ident()


async def test_application_pool_is_used_and_left_open(
    dsn: str, schema_name: str, db: asyncpg.Connection
) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    try:
        s = Scheduler(pool=pool, schema=schema_name)
        await s.migrate()
        done = Counter(3)

        @s.job("noop")
        async def noop(job: Job) -> None:
            done.hit(job.id)

        async with running(s.worker(poll_interval=60)):
            await s.schedule_many("noop", [1, 2, 3])
            await wait(done.done)
        await s.close()
        assert await pool.fetchval("SELECT 1") == 1  # the app's pool is still open
        assert len(await runs(db, schema_name)) == 3
    finally:
        await pool.close()
        await db.execute(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')


async def test_should_log_run_final_runs_only(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    from pgqueue import LinearBackoff

    done = Counter(3)

    @scheduler.job("flaky", retry=LinearBackoff(2, 0))
    async def flaky(job: Job) -> None:
        done.hit(job.attempt)
        raise RuntimeError("no")

    job_id = await scheduler.schedule("flaky")
    async with running(scheduler.worker(should_log_run=log_final_runs)):
        await wait(done.done)
    [run] = await runs(db, scheduler.schema, job_id)
    assert (run["attempt"], run["outcome"], run["retry_at"]) == (3, "failed", None)


async def test_structured_log_events(scheduler: Scheduler, caplog: pytest.LogCaptureFixture) -> None:
    from pgqueue import LinearBackoff

    done = Counter(3)

    @scheduler.job("ok")
    async def ok(job: Job) -> None:
        done.hit(job.id)

    @scheduler.job("bad", retry=LinearBackoff(1, 0))
    async def bad(job: Job) -> None:
        done.hit(job.id)
        raise RuntimeError("nope")

    caplog.set_level("DEBUG", logger="pgqueue")
    good = await scheduler.schedule("ok")
    failing = await scheduler.schedule("bad")
    async with running(scheduler.worker()):
        await wait(done.done)
    events: dict[str, list[dict[str, object]]] = {}
    for rec in caplog.records:
        if rec.name == "pgqueue":
            fields = vars(rec)
            events.setdefault(str(fields["event"]), []).append(fields)
    started = [e for e in events["job_started"] if e["job_id"] == good]
    assert started
    assert {"type", "queue", "attempt"} <= set(started[0])
    [finished] = [e for e in events["job_finished"] if e["job_id"] == good]
    duration = finished["duration_s"]
    assert isinstance(duration, float)
    assert duration >= 0
    [retry] = events["job_retry"]
    assert (retry["job_id"], retry["attempt"], retry["retry_at"]) == (failing, 1, "+0s")
    [failed] = events["job_failed"]
    assert (failed["job_id"], failed["attempt"], failed["error"]) == (failing, 2, "RuntimeError: nope")
    assert {"worker_registered", "listener_connected", "worker_stopped", "batch_claimed"} <= set(events)


async def test_an_error_message_with_a_nul_byte_does_not_stop_the_flusher(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    done = Counter(6)

    @scheduler.job("nul")
    async def nul(job: Job) -> None:
        done.hit(job.id)
        if job.params == 0:
            raise ValueError("bad\x00byte and a lone \ud800 surrogate")

    await scheduler.schedule_many("nul", range(6))
    async with running(scheduler.worker(flush_max=100, flush_age=0.05)):
        await wait(done.done)
    rows = await runs(db, scheduler.schema)
    assert len(rows) == 6
    [failed] = [r for r in rows if r["outcome"] == "failed"]
    assert "bad\\x00byte" in failed["error"]
    assert await hot_count(db, scheduler.schema) == 0


async def test_a_run_row_the_database_refuses_does_not_block_the_others(
    scheduler: Scheduler, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever makes one run row unwritable (here: an outcome the CHECK refuses), the flusher
    writes the rest, ends that job without its row, and keeps going."""
    from pgqueue.worker import flusher

    real = flusher.add_results
    poisoned: list[int] = []

    def corrupting(batch: FlushBatch, items: list[RunResult], should_log_run: ShouldLogRun | None) -> None:
        real(batch, items, should_log_run)
        for item in items:
            if item.job.params == 0 and item.job.id in batch.end_ids:  # the poisoned job
                batch.end_detail(batch.end_ids.index(item.job.id), "bogus", None, None, True)
                poisoned.append(item.job.id)

    monkeypatch.setattr(flusher, "add_results", corrupting)
    done = Counter(5)

    @scheduler.job("work")
    async def work(job: Job) -> None:
        done.hit(job.id)

    ids = await scheduler.schedule_many("work", range(5))
    async with running(scheduler.worker(flush_max=100, flush_age=0.05)):
        await wait(done.done)
        await until(lambda: hot_empty(db, scheduler.schema))
    rows = await runs(db, scheduler.schema)
    assert poisoned
    assert sorted(r["job_id"] for r in rows) == sorted(i for i in ids if i != poisoned[0])
