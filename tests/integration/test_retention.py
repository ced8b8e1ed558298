"""Retention of the partitioned run log on PostgreSQL: whole days dropped, failed runs kept
longer, rows that waited in a DEFAULT partition moved or deleted, lock waits bounded.

The behaviour both backends share (what a round removes) is in
``tests/contract/test_retention_contract.py``; here is what only PostgreSQL has:
partitions, DEFAULT partitions, dead tuples and locks.
"""

from __future__ import annotations

import datetime as dt

import anyio
import asyncpg
import pytest

from pgqueue import Job, JobNotFound, JobState, Scheduler
from pgqueue.maintenance.retention import Retention
from pgqueue.store.postgres import PostgresStore, create_pool
from pgqueue.store.retention_plan import partition_name
from tests._support import Counter, running, until, wait

pytestmark = pytest.mark.pg

DAY = dt.timedelta(days=1)
NOON = dt.time(12, tzinfo=dt.UTC)


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


async def _store(scheduler: Scheduler) -> PostgresStore:
    store = await scheduler.open()
    assert isinstance(store, PostgresStore)
    return store


async def _add_runs(
    db: asyncpg.Connection, schema: str, runs: list[tuple[int, int, dt.datetime, str, bool]]
) -> None:
    """Log runs directly: (job id, attempt, finished at, outcome, put back?)."""
    await db.executemany(
        f"""INSERT INTO "{schema}".job_runs (job_id, inserted_at, run_at, started_at, finished_at, retry_at,
                attempt, priority, queue, type, outcome, params)
            VALUES ($1, $3::timestamptz, $3, $3, $3, CASE WHEN $5 THEN $3 END, $2, 0, 'default', 't', $4,
                    '{{}}')""",
        runs,
    )


async def _where(db: asyncpg.Connection, schema: str) -> dict[int, str]:
    """Each logged job id: the partition its (single) run is in."""
    rows = await db.fetch(f'SELECT job_id, tableoid::regclass::text FROM "{schema}".job_runs')
    return {r[0]: r[1].split(".")[-1].strip('"') for r in rows}


async def _partitions(db: asyncpg.Connection, schema: str) -> set[str]:
    rows = await db.fetch(
        """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent IN (to_regclass(format('%I.job_runs_done', $1::text)),
                                 to_regclass(format('%I.job_runs_failed', $1::text)))""",
        schema,
    )
    return {r[0] for r in rows}


async def test_a_round_drops_whole_expired_days_and_keeps_failed_runs_longer(
    dsn: str, scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """40 days of runs, one of each kind a day, each day in its partitions: with 14 and 30
    days, the days before the cutoffs go whole, by dropping their tables. Nothing else is
    deleted: the statistics show no dead tuple in what is left, while the one row that
    waited in a DEFAULT partition (the control) shows as deleted.

    One pool connection does the round, so that its statistics are flushed together after
    its last statement: once the control's delete is visible, every count of the round is."""
    schema, today = scheduler.schema, _today()
    days = [today - n * DAY for n in range(40)]
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        store = PostgresStore(pool, schema)
        for day in days[1:]:
            assert await store.runs_partition_ensure(day, 5.0) == 2
        runs = [(99, 1, dt.datetime.combine(today - 50 * DAY, NOON), "succeeded", False)]  # the control
        for n, day in enumerate(days):
            at = dt.datetime.combine(day, NOON)
            runs += [
                (1000 + n, 1, at, "succeeded", False),
                (2000 + n, 1, at, "failed", False),  # a failed job's final run: kept 30 days
                (3000 + n, 1, at, "failed", True),  # failed and put back: an ordinary run
                (4000 + n, 1, at, "cancelled", False),
            ]
        await _add_runs(db, schema, runs)

        result = await Retention(store, dt.timedelta(days=14), dt.timedelta(days=30)).run_once()

        done_before = dt.datetime.combine(today - 14 * DAY, dt.time(), dt.UTC)
        failed_before = dt.datetime.combine(today - 30 * DAY, dt.time(), dt.UTC)
        assert (result.done_before, result.failed_before) == (done_before, failed_before)
        expected = sorted(
            [partition_name("done", d) for d in days if d < done_before.date()]
            + [partition_name("failed", d) for d in days if d < failed_before.date()],
            key=lambda name: (name[-8:], name),
        )
        assert list(result.partitions_dropped) == expected
        assert (result.rows_deleted, result.busy) == (1, ())
        kept = {
            job: partition_name("failed" if job // 1000 == 2 else "done", days[job % 1000])
            for job in (k * 1000 + n for k in (1, 2, 3, 4) for n in range(40))
            if days[job % 1000] >= (failed_before if job // 1000 == 2 else done_before).date()
        }
        assert await _where(db, schema) == kept
        assert not (await _partitions(db, schema)) & set(expected)

        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_stat_force_next_flush()")

        async def flushed() -> bool:
            n = await db.fetchval(
                "SELECT n_tup_del FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = $2",
                schema,
                "job_runs_done_default",
            )
            return bool(n)

        await until(flushed)
        dead = await db.fetch(
            "SELECT relname FROM pg_stat_user_tables WHERE schemaname = $1 AND relname LIKE 'job_runs%' "
            "AND (n_tup_del > 0 OR n_dead_tup > 0) ORDER BY 1",
            schema,
        )
        assert [r[0] for r in dead] == ["job_runs_done_default"]
    finally:
        await pool.close()


async def test_ensure_moves_the_days_rows_out_of_the_default_partition(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    schema, store = scheduler.schema, await _store(scheduler)
    later = _today() + 10 * DAY  # beyond the partitions made ahead: its rows go to DEFAULT
    at = dt.datetime.combine(later, dt.time(), dt.UTC)
    await _add_runs(
        db,
        schema,
        [
            (1, 1, at, "succeeded", False),  # the first instant of the day
            (2, 1, at + DAY - dt.timedelta(microseconds=1), "failed", False),  # the last
            (3, 1, at + DAY, "succeeded", False),  # the next day's: stays in DEFAULT
        ],
    )
    assert await _where(db, schema) == {
        1: "job_runs_done_default",
        2: "job_runs_failed_default",
        3: "job_runs_done_default",
    }
    assert await store.runs_partition_ensure(later, 5.0) == 2
    assert await _where(db, schema) == {
        1: partition_name("done", later),
        2: partition_name("failed", later),
        3: "job_runs_done_default",
    }
    assert await store.runs_partition_ensure(later, 5.0) == 0  # already there


async def test_a_round_gives_the_waiting_rows_their_days_and_deletes_the_expired_ones(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """Rows that waited in DEFAULT partitions (the leader was down): the days not expired get
    partitions and their rows; the expired rows are deleted, failed ones by their own cutoff."""
    schema, store, today = scheduler.schema, await _store(scheduler), _today()
    at = {n: dt.datetime.combine(today - n * DAY, NOON) for n in (3, 20, 40)}
    await _add_runs(
        db,
        schema,
        [
            (1, 1, at[3], "succeeded", False),
            (2, 1, at[20], "succeeded", False),  # expired: deleted
            (3, 1, at[20], "timeout", False),  # a failed job's final run, 20 days old: kept
            (4, 1, at[40], "crashed", False),  # and 40 days old: deleted
        ],
    )
    retention = Retention(store, dt.timedelta(days=14), dt.timedelta(days=30), days_ahead=2)
    dry = await retention.run_once(dry_run=True)
    assert (dry.dry_run, dry.rows_deleted, dry.partitions_dropped) == (True, 2, ())
    assert dry.partitions_created == 4  # both trees of the days of runs 1 and 3
    assert len(await _where(db, schema)) == 4  # a dry run changes nothing

    result = await retention.run_once()
    # Run 3's day got partitions in both trees: run 2 moved into the done one, expired at
    # once, and went with it in this round; run 4 alone was deleted.
    assert (result.rows_deleted, result.partitions_created) == (1, 4)
    assert result.partitions_dropped == (partition_name("done", today - 20 * DAY),)
    assert await _where(db, schema) == {
        1: partition_name("done", today - 3 * DAY),
        3: partition_name("failed", today - 20 * DAY),
    }
    assert (await scheduler.get_job(3)).state is JobState.FAILED
    with pytest.raises(JobNotFound):
        await scheduler.get_job(2)


async def test_a_failed_run_goes_with_the_later_run_of_its_job(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """A failed job retried by hand and then succeeded: when its success is pruned, its
    failed run (kept longer, in the other tree) goes too, in a partition and in DEFAULT."""
    schema, store, today = scheduler.schema, await _store(scheduler), _today()
    for n in (16, 20):
        await store.runs_partition_ensure(today - n * DAY, 5.0)
    at16, at20 = (dt.datetime.combine(today - n * DAY, NOON) for n in (16, 20))
    await _add_runs(
        db,
        schema,
        [
            (1, 1, at20, "failed", False),  # failed for good...
            (1, 2, at16, "succeeded", False),  # ...until retry() ran it again
            (2, 1, at20, "failed", False),  # failed, never retried: kept 30 days
            (3, 1, at20, "failed", False),
            (3, 2, at16 + 3 * DAY, "succeeded", False),  # its success is not expired yet
        ],
    )
    result = await Retention(store, dt.timedelta(days=14), dt.timedelta(days=30)).run_once()
    assert partition_name("done", today - 16 * DAY) in result.partitions_dropped
    assert result.rows_deleted == 1
    with pytest.raises(JobNotFound):
        await scheduler.get_job(1)  # not "failed" again, to be retried a second time
    assert (await scheduler.get_job(2)).state is JobState.FAILED
    assert (await scheduler.get_job(3)).state is JobState.SUCCEEDED
    failed = await scheduler.list_jobs(state=JobState.FAILED)
    assert [r.id for r in failed.items] == [2]


async def test_a_second_round_finds_nothing_to_do(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    schema, store, today = scheduler.schema, await _store(scheduler), _today()
    await _add_runs(
        db,
        schema,
        [(n, 1, dt.datetime.combine(today - n * DAY, NOON), "succeeded", False) for n in range(1, 30)],
    )
    first = await Retention(store).run_once()
    assert first.partitions_created > 0
    assert first.rows_deleted > 0
    second = await Retention(store).run_once()
    assert (second.partitions_created, second.partitions_dropped, second.rows_deleted, second.busy) == (
        0,
        (),
        0,
        (),
    )


async def test_concurrent_rounds_and_ensures_do_not_fail(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """Two leaders for a moment, or prune beside the leader: the advisory lock lines the DDL
    up, and the second caller finds the partitions made or gone."""
    schema, store, today = scheduler.schema, await _store(scheduler), _today()
    later = today + 30 * DAY
    await _add_runs(db, schema, [(1, 1, dt.datetime.combine(later, NOON), "succeeded", False)])
    created: list[int | None] = []
    results = []

    async def ensure() -> None:
        created.append(await store.runs_partition_ensure(later, 10.0))

    async def round_() -> None:
        results.append(await Retention(store, days_ahead=5).run_once())

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(ensure)
            tg.start_soon(round_)
    assert sorted(created, key=str) == [0, 0, 0, 2]
    assert sum(r.partitions_created for r in results) == 2 * 6 - 2 * 3  # today..+5, minus the 3 of migrate
    assert await _where(db, schema) == {1: partition_name("done", later)}


async def test_a_drop_that_cannot_get_its_lock_gives_up_and_the_next_round_does_it(
    dsn: str, scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """A long read of the log holds its lock: the drop waits only its lock timeout, inserts
    into the log go on meanwhile, and the partition is reported busy, then dropped later."""
    schema, store, today = scheduler.schema, await _store(scheduler), _today()
    old = today - 20 * DAY
    await store.runs_partition_ensure(old, 5.0)
    await _add_runs(db, schema, [(1, 1, dt.datetime.combine(old, NOON), "succeeded", False)])
    retention = Retention(store, dt.timedelta(days=14), days_ahead=2, lock_timeout=0.2)
    reader = await asyncpg.connect(dsn)
    try:
        async with reader.transaction():
            await reader.fetchval(f'SELECT count(*) FROM "{schema}".job_runs')  # holds ACCESS SHARE
            result = await retention.run_once()
            assert result.busy == (partition_name("done", old),)
            assert result.partitions_dropped == ()
            await _add_runs(db, schema, [(2, 1, dt.datetime.now(dt.UTC), "succeeded", False)])
        result = await retention.run_once()
        assert (result.busy, result.partitions_dropped) == ((), (partition_name("done", old),))
    finally:
        await reader.close()
    assert set(await _where(db, schema)) == {2}


async def test_a_flush_into_a_day_without_partition_lands_in_default_and_is_kept(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """Today's partitions are gone (the leader was down for days): a worker's run is logged
    all the same, in the DEFAULT partition, and the next round moves it into today's."""
    schema, today = scheduler.schema, _today()
    for kind in ("done", "failed"):
        await db.execute(f'DROP TABLE "{schema}"."{partition_name(kind, today)}"')
    done = Counter(1)

    @scheduler.job("t")
    async def t(job: Job) -> None:
        done.hit(job.id)

    job_id = await scheduler.schedule("t")
    # Outside the maintenance election: a leader's first retention round would make today's
    # partitions again before the run is written.
    async with running(scheduler.worker(poll_interval=3600, maintenance=False)):
        await wait(done.done)

        async def logged() -> bool:
            return job_id in await _where(db, schema)

        await until(logged)
    # Unless the day turned meanwhile (then it went to tomorrow's partition, made ahead).
    if dt.datetime.now(dt.UTC).date() == today:
        assert (await _where(db, schema))[job_id] == "job_runs_done_default"
    assert (await scheduler.get_job(job_id)).state is JobState.SUCCEEDED
    result = await Retention(await _store(scheduler), days_ahead=2).run_once()
    assert result.partitions_created == 2
    assert (await _where(db, schema))[job_id] == partition_name(
        "done", (await scheduler.get_job(job_id)).runs[0].finished_at.astimezone(dt.UTC).date()
    )


async def test_drop_refuses_a_table_that_is_not_a_day_partition(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    store = await _store(scheduler)
    await db.execute(f'CREATE TABLE "{scheduler.schema}".job_runs_done_p20200101 (x int)')  # not attached
    for name in ("jobs", "job_runs_done_default", 'job_runs_done_p2020"; --', "job_runs_done_p20200101"):
        with pytest.raises(asyncpg.UndefinedTableError, match="not a day partition"):
            await store.runs_partition_drop(name, 1.0)
    assert (
        await db.fetchval(f"SELECT to_regclass('\"{scheduler.schema}\".job_runs_done_p20200101')") is not None
    )
    # A name of the form that is not there (a concurrent round dropped it): nothing to do.
    assert await store.runs_partition_drop("job_runs_failed_p20200101", 1.0) == 0
