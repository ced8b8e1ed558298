"""Migration 12 on a populated database: the run log becomes partitioned and keeps its history.

The schema is built as an older pgqueue left it (migrations 1..9, and 1 alone), filled
with runs of every shape over 45 days plus live jobs, then migrated to the latest version:
every run is still there, byte for byte, in the partition of its kind and UTC day, and the
management API reads it as before.
"""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from pgqueue import JobNotFound, JobState, Scheduler
from pgqueue.store.postgres.migrate import LATEST_VERSION, load_migrations
from pgqueue.store.retention_plan import partition_name
from tests._support import drop_schema

pytestmark = pytest.mark.pg

DAYS = 45
# (outcome, retry_at set?): every kind of run the log holds. Final failures are the runs
# without retry_at whose outcome is neither succeeded nor cancelled.
SHAPES_V9 = [
    ("succeeded", False),
    ("failed", False),
    ("failed", True),
    ("timeout", False),
    ("timeout", True),
    ("crashed", True),
    ("crashed", False),
    ("interrupted", True),
    ("cancelled", False),
    ("snoozed", True),
    ("suspended", True),
]
COLUMNS = [
    "job_id", "worker_id", "inserted_at", "run_at", "started_at", "finished_at", "retry_at", "attempt",
    "priority", "queue", "type", "outcome", "error", "params", "result",
]  # fmt: skip
SHAPES_V1 = [s for s in SHAPES_V9 if s[0] not in ("snoozed", "suspended")]  # 1's outcome check


async def _build(db: asyncpg.Connection, schema: str, version: int) -> None:
    """The schema as pgqueue at ``version`` left it: migrations 1..version applied by hand."""
    async with db.transaction():
        await db.execute(f'CREATE SCHEMA "{schema}"')
        await db.execute(
            f'CREATE TABLE "{schema}".schema_version '
            "(version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await db.execute(f'SET LOCAL search_path TO "{schema}"')
        for v, name, sql in load_migrations()[:version]:
            await db.execute(sql)
            await db.execute(
                f'INSERT INTO "{schema}".schema_version (version, name) VALUES ($1, $2)', v, name
            )


async def _fill(db: asyncpg.Connection, schema: str, shapes: list[tuple[str, bool]]) -> int:
    """Runs over DAYS days (job i's runs end on day i % DAYS, some at a UTC day's edges) and
    live jobs; returns the number of runs. Job ids of runs and live jobs do not overlap."""
    base = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    rows = []
    for i in range(1, 400):
        day = base - dt.timedelta(days=i % DAYS)
        outcome, put_back = shapes[i % len(shapes)]
        finished = {
            0: day.replace(hour=0),  # exactly midnight UTC: the day it starts
            1: day.replace(hour=23, minute=59, second=59, microsecond=999_999),
        }.get(i % 7, day + dt.timedelta(seconds=i))
        rows.append(
            (
                i,
                None if i % 5 == 0 else 3,
                finished - dt.timedelta(hours=1),
                finished - dt.timedelta(minutes=30),
                finished - dt.timedelta(seconds=5),
                finished,
                finished + dt.timedelta(minutes=1) if put_back else None,
                1 + i % 3,
                i % 4 - 2,
                f"q{i % 3}",
                f"t{i % 2}",
                outcome,
                None if outcome == "succeeded" else f"error {i} ünïcode 'quoted'",
                '{"b":  1, "a": [1,2] }' if i % 2 else None,  # json keeps its text as written
                '{"ok":true}' if outcome == "succeeded" else None,
            )
        )
    await db.copy_records_to_table(
        "job_runs",
        schema_name=schema,
        records=rows,
        columns=COLUMNS,
    )
    await db.execute(
        f"""INSERT INTO "{schema}".jobs (id, queue, type, params, run_at, delayed)
            SELECT i, 'q0', 't0', '1', now() + interval '1 hour', true
            FROM generate_series(1000, 1009) AS i"""
    )
    return len(rows)


async def _snapshot(db: asyncpg.Connection, schema: str, columns: list[str]) -> list[str]:
    """Every run as the text of the given columns, sorted: equal lists mean byte-equal rows.

    The columns are the ones the log had before the migration: later migrations may add
    columns (NULL in old rows), which are not part of what the move must keep.
    """
    listed = ", ".join(f'"{c}"' for c in columns)
    rows = await db.fetch(f'SELECT ROW({listed})::text FROM "{schema}".job_runs ORDER BY 1')
    return [r[0] for r in rows]


async def _columns(db: asyncpg.Connection, schema: str) -> list[str]:
    rows = await db.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0"
        " AND NOT attisdropped ORDER BY attnum",
        f'"{schema}".job_runs',
    )
    return [r[0] for r in rows]


def _expected_partition(finished: dt.datetime, retry_at: dt.datetime | None, outcome: str) -> str:
    failed = retry_at is None and outcome not in ("succeeded", "cancelled")
    return partition_name("failed" if failed else "done", finished.astimezone(dt.UTC).date())


@pytest.mark.parametrize(("version", "shapes"), [(9, SHAPES_V9), (1, SHAPES_V1)], ids=["from_9", "from_1"])
async def test_a_populated_log_migrates_into_partitions_without_losing_a_byte(
    dsn: str, schema_name: str, db: asyncpg.Connection, version: int, shapes: list[tuple[str, bool]]
) -> None:
    await _build(db, schema_name, version)
    n = await _fill(db, schema_name, shapes)
    columns = await _columns(db, schema_name)
    before = await _snapshot(db, schema_name, columns)
    assert len(before) == n
    s = Scheduler(dsn, schema=schema_name)
    try:
        assert await s.migrate() == list(range(version + 1, LATEST_VERSION + 1))
        assert await _snapshot(db, schema_name, columns) == before

        placed = await db.fetch(
            "SELECT tableoid::regclass::text AS part, finished_at, retry_at, outcome "
            f'FROM "{schema_name}".job_runs'
        )
        wrong = [
            (r["part"], r["finished_at"], r["retry_at"], r["outcome"])
            for r in placed
            if r["part"].split(".")[-1].strip('"')
            != _expected_partition(r["finished_at"], r["retry_at"], r["outcome"])
        ]
        assert wrong == []
        assert await db.fetchval(f'SELECT count(*) FROM "{schema_name}".job_runs_done_default') == 0
        assert await db.fetchval(f'SELECT count(*) FROM "{schema_name}".job_runs_failed_default') == 0
        kinds = await db.fetchval(
            f"""SELECT count(DISTINCT c.relname) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = '"{schema_name}".job_runs_done'::regclass"""
        )
        assert kinds >= DAYS  # a partition per day of history (plus today's, the days ahead, DEFAULT)

        # The management API reads the history as before: a finished job and its runs...
        i = next(i for i in range(1, 400, 2) if not shapes[i % len(shapes)][1])  # a final run, with params
        record = await s.get_job(i)
        assert [(r.attempt, r.outcome.value) for r in record.runs] == [
            (1 + i % 3, shapes[i % len(shapes)][0])
        ]
        assert record.params == {"b": 1, "a": [1, 2]}
        # ...the failed ones by their final run, newest first, and the live ones.
        failed = await s.list_jobs(state=JobState.FAILED, limit=500)
        expected = sorted(
            (i for i in range(1, 400) if not shapes[i % len(shapes)][1] and shapes[i % len(shapes)][0]
             not in ("succeeded", "cancelled")),
            reverse=True,
        )  # fmt: skip
        assert [r.id for r in failed.items] == expected
        assert (await s.get_job(1005)).state is JobState.SCHEDULED
        with pytest.raises(JobNotFound):
            await s.get_job(999)
    finally:
        await s.close()
        await drop_schema(dsn, schema_name)


async def test_the_partitioned_log_has_the_old_tables_shape(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """Columns, the outcome check and both indexes are there, on the parent and in a partition."""
    schema = scheduler.schema
    columns = await db.fetch(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = $1 AND table_name = 'job_runs' ORDER BY ordinal_position",
        schema,
    )
    assert [c[0] for c in columns][: len(COLUMNS)] == COLUMNS  # later migrations append
    today = partition_name("done", dt.datetime.now(dt.UTC).date())
    indexes = await db.fetch(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = ANY($2::text[]) ORDER BY 1",
        schema,
        ["job_runs", today],
    )
    defs = " ".join(r[0] for r in indexes)
    assert defs.count("USING btree (job_id, attempt, started_at)") == 2
    assert defs.count("USING brin (finished_at)") == 2
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            f"""INSERT INTO "{schema}".job_runs (job_id, inserted_at, run_at, started_at, finished_at,
                    attempt, priority, queue, type, outcome)
                VALUES (1, now(), now(), now(), now(), 1, 0, 'q', 't', 'lost')"""
        )
    assert await db.fetchval(f"SELECT to_regclass('\"{schema}\".job_runs_unpartitioned')") is None
