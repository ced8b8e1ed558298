"""Every named query, through the store, on a real server (the contract the stages rely on)."""

from __future__ import annotations

import datetime as dt
import re
import time

import anyio
import asyncpg
import pytest

from pgqueue import Job, Outcome, Scheduler, _models
from pgqueue.store import FinalizeResult, FlushBatch, NewJobs
from pgqueue.store.postgres.migrate import LATEST_VERSION
from tests._support import claim_records, hot_count, pg_store, runs, until

pytestmark = pytest.mark.pg


async def test_every_store_method_against_the_database(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    schema = scheduler.schema
    store = await pg_store(scheduler)
    assert await store.schema_version() == LATEST_VERSION

    wid, registered_at = await store.worker_register(["q"])
    assert isinstance(registered_at, float)  # the server's clock, epoch seconds
    assert isinstance(await store.worker_heartbeat(wid), float)  # alive: the server's clock again

    a = await store.job_insert(None, NewJobs("q", "t"), '{"a":1}')
    b, c = await store.job_insert_many(None, NewJobs("q", "t"), ["1", "2"])
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    d = await store.job_insert(None, NewJobs("q", "t", run_at=later), "null")
    due_in = await store.job_next_due(["q"])  # seconds, by the server's clock
    server_left = await db.fetchval(
        f'SELECT extract(epoch FROM run_at - now()) FROM "{schema}".jobs WHERE id = $1', d
    )
    assert due_in is not None
    assert due_in >= float(server_left)  # asked earlier, so at least as far off as now
    assert await store.job_next_due(["elsewhere"]) is None
    soon = await store.job_insert(None, NewJobs("q2", "t", delay_s=30), "null")
    # The delay is added to the server's now(), the same instant that stamps inserted_at.
    server_due = await db.fetchval(f'SELECT run_at - inserted_at FROM "{schema}".jobs WHERE id = $1', soon)
    assert server_due == dt.timedelta(seconds=30)

    inserted = {r["id"]: r for r in await db.fetch(f'SELECT id, inserted_at, run_at FROM "{schema}".jobs')}
    rows = await claim_records(store, ["q"], 10, wid)
    assert sorted(r["id"] for r in rows) == [a, b, c]  # the delayed job is not due
    assert {r["attempt"] for r in rows} == {1}
    # Times come back as epoch seconds that convert to the stored timestamps exactly.
    claimed_run_at = {r["id"]: r["run_at"] for r in rows}
    for r in rows:
        assert dt.datetime.fromtimestamp(r["run_at"], dt.UTC) == inserted[r["id"]]["run_at"]
        assert dt.datetime.fromtimestamp(r["inserted_at"], dt.UTC) == inserted[r["id"]]["inserted_at"]

    # Release c unstarted: its attempt is not counted.
    assert await store.job_release_many(wid, [c]) == 1
    assert await db.fetchval(f'SELECT attempt FROM "{schema}".jobs WHERE id = $1', c) == 0

    t0 = time.time()
    batch = FlushBatch(end_ids=[a], end_attempts=[1], end_started=[t0], end_finished=[t0 + 0.5])
    batch.end_detail(0, None, None, '{"r": 1}', True)
    batch.back_ids, batch.back_attempts, batch.back_started, batch.back_finished = [b], [1], [t0], [t0 + 1]
    batch.back_outcomes, batch.back_errors, batch.back_due_at = ["failed"], ["boom"], [claimed_run_at[b]]
    batch.back_retry_at, batch.back_delay, batch.back_error_inc, batch.back_log = [None], [30.0], [1], [True]
    res = await store.job_finalize_many(wid, batch)
    assert res.ended == {a}
    assert set(res.put_back) == {b}
    assert res.runs_logged == 2
    row = await db.fetchrow(
        f'SELECT worker_id, errors, last_error, delayed, run_at FROM "{schema}".jobs WHERE id = $1', b
    )
    assert row is not None
    assert (row["worker_id"], row["errors"], row["last_error"], row["delayed"]) == (None, 1, "boom", True)
    logged = {r["job_id"]: r for r in await db.fetch(f'SELECT * FROM "{schema}".job_runs')}
    # The run rows are built from the job rows: everything the job had, plus this run.
    ended_run, back_run = logged[a], logged[b]
    job_a = inserted[a]
    assert (ended_run["queue"], ended_run["type"], ended_run["priority"]) == ("q", "t", 0)
    assert ended_run["params"] == '{"a":1}'  # as stored
    assert (ended_run["inserted_at"], ended_run["run_at"]) == (job_a["inserted_at"], job_a["run_at"])
    assert (ended_run["worker_id"], ended_run["attempt"]) == (wid, 1)
    # Epoch seconds become the timestamp to the microsecond (rounding may differ by one).
    assert abs(ended_run["started_at"] - dt.datetime.fromtimestamp(t0, dt.UTC)) <= dt.timedelta(
        microseconds=1
    )
    assert ended_run["finished_at"] - ended_run["started_at"] == dt.timedelta(seconds=0.5)
    assert (ended_run["outcome"], ended_run["error"], ended_run["result"]) == ("succeeded", None, '{"r": 1}')
    assert ended_run["retry_at"] is None
    assert (back_run["outcome"], back_run["error"], back_run["params"]) == ("failed", "boom", "1")
    assert back_run["run_at"] == inserted[b]["run_at"]  # when this run was due, not the retry time
    assert back_run["retry_at"] == row["run_at"] == res.put_back[b]
    assert row["run_at"] > back_run["run_at"] + dt.timedelta(seconds=29)

    # The same flush again (a lost acknowledgement): fenced, nothing changes, nothing logged.
    again = await store.job_finalize_many(wid, batch)
    assert (again.ended, again.put_back, again.runs_logged) == (frozenset(), {}, 0)
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".job_runs') == 2

    # Claim c again, then deregister: everything held is released, the row is gone.
    [again_c] = await claim_records(store, ["q"], 10, wid)
    assert again_c["id"] == c
    assert await store.worker_deregister(wid) == 1
    assert await db.fetchval(f'SELECT worker_id FROM "{schema}".jobs WHERE id = $1', c) is None
    assert await store.worker_heartbeat(wid) is None  # reaped: no clock back
    # A worker whose row is gone claims nothing.
    assert await claim_records(store, ["q"], 10, wid) == []
    assert d  # still scheduled

    # A subscription to the channel, and its self-probe.
    got = anyio.Event()
    sub = await store.subscribe(lambda payload: got.set() if payload == "p:x" else None)
    await sub.probe("p:x")
    with anyio.fail_after(10):
        await got.wait()
    assert not sub.is_lost()
    await sub.aclose()


async def test_each_row_is_fenced_by_its_own_attempt(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    """Job j is held at attempt 2 but the batch says attempt 1 (a stale replay); job k really
    is at attempt 2. Only k may end and be logged; j stays with its owner, untouched."""
    schema = scheduler.schema
    store = await pg_store(scheduler)
    wid, _server_time = await store.worker_register(["q"])
    j, k = await store.job_insert_many(None, NewJobs("q", "t"), ["1", "2"])
    await db.execute(
        f'UPDATE "{schema}".jobs SET worker_id = $1, attempt = 2 WHERE id = ANY($2::bigint[])', wid, [j, k]
    )
    now = time.time()
    batch = FlushBatch(end_ids=[j, k], end_attempts=[1, 2], end_started=[now, now], end_finished=[now, now])
    res = await store.job_finalize_many(wid, batch)
    assert res.ended == {k}
    assert res.runs_logged == 1
    assert await db.fetchval(f'SELECT worker_id FROM "{schema}".jobs WHERE id = $1', j) == wid  # untouched
    assert [r[0] for r in await db.fetch(f'SELECT job_id FROM "{schema}".job_runs')] == [k]


@pytest.mark.parametrize("backlog", [0, 2000, 30000])
async def test_the_flush_plan_is_linear_whatever_the_table(
    scheduler: Scheduler, db: asyncpg.Connection, backlog: int
) -> None:
    """The generic plan of the flush joins the jobs to its arrays with a hash join (small
    tables) or primary-key lookups (large ones): never a nested loop over every pair of rows,
    which the planner chose when the owner was compared with $1 (estimated at 1 row on a
    freshly analyzed table where worker_id is all NULL)."""
    store = await pg_store(scheduler)
    if backlog:
        await store.job_insert_many(None, NewJobs("q", "t"), ["1"] * backlog)
    await db.execute(f'ANALYZE "{scheduler.schema}".jobs')
    async with store.pool.acquire() as conn:
        assert await conn.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        await conn.execute("PREPARE fin AS " + store.q.job_finalize_many)
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                "EXPLAIN EXECUTE fin(1, '{1}', '{1}', '{1}', '{1}', '{}', '{}', '{}', '{}', '{2}',"
                " '{1}', '{1}', '{1}', '{failed}', '{}', '{1}', '{}', '{1}', '{1}', '{true}', '{}', 0, 'ch',"
                " '{}', '{}')"
            )
        )
        await conn.execute("DEALLOCATE fin")
    assert "Join Filter" not in plan, plan
    joins = plan.count("Hash Join") + plan.count("Index Scan using jobs_pkey")
    assert joins == 2, plan  # the delete and the update
    if backlog >= 30000:
        assert plan.count("Index Scan using jobs_pkey") == 2, plan


async def test_vacuum_runs_only_past_the_threshold_and_one_at_a_time(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    schema = scheduler.schema
    table = f"'\"{schema}\".jobs'::regclass"
    store = await pg_store(scheduler)
    await db.execute(
        f"INSERT INTO \"{schema}\".jobs (queue, type) SELECT 'q', 't' FROM generate_series(1, 3000)"
    )
    await db.execute(f'DELETE FROM "{schema}".jobs')
    await db.execute("SELECT pg_stat_force_next_flush()")  # PostgreSQL 15+: publish the counts now

    async def counted() -> bool:
        return bool(
            await db.fetchval(f"SELECT n_dead_tup >= 3000 FROM pg_stat_user_tables WHERE relid = {table}")
        )

    await until(counted)
    assert await store.jobs_vacuum_if_needed(10_000) is None  # below the threshold
    key = f"pgqueue.vacuum:{schema}"
    await db.fetchval("SELECT pg_advisory_lock(hashtextextended($1, 0))", key)
    assert await store.jobs_vacuum_if_needed(100) is None  # another worker is vacuuming
    await db.fetchval("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
    assert await store.jobs_vacuum_if_needed(100) == 3000
    assert await db.fetchval(f"SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = {table}") >= 1


async def test_the_vacuum_cleans_the_indexes_even_when_few_pages_hold_dead_rows(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """The dead entries at the head of the claim index are what the vacuum is for. Dead rows
    on under 2% of the pages would make a default VACUUM skip the indexes (PostgreSQL 14+);
    the index's row estimate, which only an index pass updates, shows that it did not."""
    schema = scheduler.schema
    store = await pg_store(scheduler)
    await db.execute(
        f"INSERT INTO \"{schema}\".jobs (queue, type) SELECT 'q', 't' FROM generate_series(1, 20000)"
    )
    await db.execute(f'VACUUM ANALYZE "{schema}".jobs')
    index = f"'\"{schema}\".jobs_claim_idx'::regclass"
    assert await db.fetchval(f"SELECT reltuples FROM pg_class WHERE oid = {index}") == 20000
    await db.execute(f'DELETE FROM "{schema}".jobs WHERE id <= 100')  # the head: a page or two
    async with store.pool.acquire() as conn:
        await conn.execute(store.q.jobs_vacuum)
    assert await db.fetchval(f"SELECT reltuples FROM pg_class WHERE oid = {index}") == 19900


async def test_a_cancelled_vacuum_still_releases_its_lock(
    scheduler: Scheduler, db: asyncpg.Connection, dsn: str
) -> None:
    schema = scheduler.schema
    store = await pg_store(scheduler)
    await db.execute(
        f"INSERT INTO \"{schema}\".jobs (queue, type) SELECT 'q', 't' FROM generate_series(1, 300)"
    )
    await db.execute(f'DELETE FROM "{schema}".jobs')
    await db.execute("SELECT pg_stat_force_next_flush()")
    blocker = await asyncpg.connect(dsn)
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute(f'LOCK TABLE "{schema}".jobs IN SHARE UPDATE EXCLUSIVE MODE')  # VACUUM waits
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.jobs_vacuum_if_needed, 1)
            key = f"pgqueue.vacuum:{schema}"

            async def vacuum_waiting() -> bool:
                return bool(
                    await db.fetchval("SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE 'VACUUM%'")
                )

            await until(vacuum_waiting)
            tg.cancel_scope.cancel()
        await tx.rollback()
        assert await db.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key)
        await db.fetchval("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
    finally:
        await blocker.close()


async def _flush_behind_a_row_lock(
    scheduler: Scheduler, db: asyncpg.Connection, concurrent_update: str, *, put_back: bool
) -> tuple[FinalizeResult, int]:
    """Claim one job, then flush it while another transaction holds its row with an update.

    The flush reads the job as ours, blocks on the row, and goes on when the other
    transaction commits: what it then does shows how it treats the newer row version.
    """
    schema = scheduler.schema
    store = await pg_store(scheduler)
    wid, _server_time = await store.worker_register(["q"])
    job_id = await store.job_insert(None, NewJobs("q", "t"), "1")
    [claimed] = await claim_records(store, ["q"], 1, wid)
    now = time.time()
    batch = FlushBatch()
    if put_back:
        batch.back_ids, batch.back_attempts, batch.back_started, batch.back_finished = (
            [job_id],
            [1],
            [now],
            [now],
        )
        batch.back_outcomes, batch.back_errors, batch.back_retry_at = ["failed"], ["boom"], [None]
        batch.back_due_at = [claimed["run_at"]]
        batch.back_delay, batch.back_error_inc, batch.back_log = [0.0], [1], [True]
    else:
        batch.end_ids, batch.end_attempts, batch.end_started, batch.end_finished = [job_id], [1], [now], [now]
    result: list[FinalizeResult] = []

    async def flush() -> None:
        result.append(await store.job_finalize_many(wid, batch))

    async def flush_waits_for_the_row() -> bool:
        return bool(
            await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE 'WITH done AS MATERIALIZED%' AND strpos(query, $1) > 0",
                schema,  # the text is cut at 1 kB, but the schema name comes early
            )
        )

    other = await asyncpg.connect(store.dsn)
    try:
        tx = other.transaction()
        await tx.start()
        await other.execute(concurrent_update.format(schema=f'"{schema}"'), job_id)
        async with anyio.create_task_group() as tg:
            tg.start_soon(flush)
            await until(flush_waits_for_the_row)
            await tx.commit()
    finally:
        await other.close()
    assert claimed["id"] == job_id
    return result[0], job_id


@pytest.mark.parametrize("put_back", [False, True])
async def test_a_row_released_during_the_flush_is_neither_finalized_nor_logged(
    scheduler: Scheduler, db: asyncpg.Connection, put_back: bool
) -> None:
    """A reaper releases the job between the flush's read and its write: the flush must
    re-check the owner on the new row version, leave the job to its next run, and log nothing."""
    release = "UPDATE {schema}.jobs SET worker_id = NULL, delayed = true WHERE id = $1"
    res, job_id = await _flush_behind_a_row_lock(scheduler, db, release, put_back=put_back)
    assert (res.ended, res.put_back, res.runs_logged) == (frozenset(), {}, 0)
    row = await db.fetchrow(f'SELECT worker_id, errors FROM "{scheduler.schema}".jobs WHERE id = $1', job_id)
    assert row is not None  # put back or left, never deleted
    assert (row["worker_id"], row["errors"]) == (None, 0)
    assert await runs(db, scheduler.schema) == []


@pytest.mark.parametrize("put_back", [False, True])
async def test_a_row_flagged_during_the_flush_is_finalized_and_logged(
    scheduler: Scheduler, db: asyncpg.Connection, put_back: bool
) -> None:
    """cancel() flags the job (a new row version, still ours) while the flush waits for it:
    the flush finds the new version by its owner and writes the job's end and its run row."""
    flag = "UPDATE {schema}.jobs SET cancel_requested = true WHERE id = $1"
    res, job_id = await _flush_behind_a_row_lock(scheduler, db, flag, put_back=put_back)
    assert res.runs_logged == 1
    if put_back:
        assert set(res.put_back) == {job_id}
        row = await db.fetchrow(
            f'SELECT worker_id, errors FROM "{scheduler.schema}".jobs WHERE id = $1', job_id
        )
        assert row is not None
        assert (row["worker_id"], row["errors"]) == (None, 1)
    else:
        assert res.ended == {job_id}
        assert await hot_count(db, scheduler.schema) == 0
    [run] = await runs(db, scheduler.schema)
    assert (run["job_id"], run["outcome"]) == (job_id, "failed" if put_back else "succeeded")


# The column each ROW_* constant names in the claim's RETURNING list. A ROW_* constant added
# to pgqueue._models without an entry here fails the test below.
CLAIM_COLUMNS = {
    "ROW_ID": "id",
    "ROW_QUEUE": "queue",
    "ROW_TYPE": "type",
    "ROW_PARAMS": "params",
    "ROW_PRIORITY": "priority",
    "ROW_ATTEMPT": "attempt",
    "ROW_ERRORS": "errors",
    "ROW_LAST_ERROR": "last_error",
    "ROW_RUN_AT": "run_at",
    "ROW_INSERTED_AT": "inserted_at",
    "ROW_TIMEOUT": "timeout_s",
    "ROW_CANCEL_REQUESTED": "cancel_requested",
    "ROW_COUNTED": "counted",
    "ROW_CHECKPOINT": "checkpoint",
    "ROW_TRACE": "trace_context",
    "ROW_TENANT": "tenant",
}


async def test_the_claim_returns_each_column_at_its_row_index(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """Job, the runner and the flusher read claimed rows by position (ROW_*): the claim's
    RETURNING list must put every column where its constant says, and Job must read it back."""
    schema = scheduler.schema
    scheduler.register("send", lambda job: None)
    run_at = dt.datetime(2020, 1, 2, 3, 4, 5, 678_901, tzinfo=dt.UTC)  # due, and unlike inserted_at
    job_id = await scheduler.schedule(
        "send", {"to": "ada"}, run_at=run_at, queue="mail", priority=-3, timeout=2.5, tenant="acme"
    )
    # Values a fresh job does not have, so that two swapped columns cannot read back alike.
    await db.execute(
        f"UPDATE \"{schema}\".jobs SET errors = 4, last_error = 'boom', cancel_requested = true"
        " WHERE id = $1",
        job_id,
    )
    inserted_at = await db.fetchval(f'SELECT inserted_at FROM "{schema}".jobs WHERE id = $1', job_id)
    wid = await db.fetchval(
        f'INSERT INTO "{schema}".workers (pid, hostname, queues) VALUES (1, $1, $2) RETURNING id',
        "test",
        ["mail"],
    )  # not store.worker_register: this test is about the claim's columns only
    store = await pg_store(scheduler)
    [record] = await claim_records(store, ["mail"], 10, wid)

    constants = {name: getattr(_models, name) for name in dir(_models) if name.startswith("ROW_")}
    assert set(constants) == set(CLAIM_COLUMNS), "a ROW_* constant without an expected column, or the reverse"
    columns = list(record.keys())
    assert sorted(constants.values()) == list(range(len(columns)))  # one constant per column, none left over
    for name, index in constants.items():
        assert columns[index] == CLAIM_COLUMNS[name], name

    job = Job._from_row(record)
    assert (job.id, job.queue, job.type, job.params) == (job_id, "mail", "send", {"to": "ada"})
    assert (job.priority, job.attempt, job.errors, job.last_error) == (-3, 1, 4, "boom")
    assert (job.run_at, job.inserted_at) == (run_at, inserted_at)
    assert job.timeout == 2.5
    assert job.cancel_requested is True
    assert job.tenant == "acme"


async def test_the_run_log_accepts_exactly_the_outcomes_of_the_code(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    definition = await db.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'job_runs_outcome_check' "
        "AND conrelid = to_regclass($1)",
        f'"{scheduler.schema}".job_runs',
    )
    assert set(re.findall(r"'(\w+)'", definition)) == {o.value for o in Outcome}
