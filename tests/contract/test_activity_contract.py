"""activity() on each backend: buckets, kinds, queues, the window's edges and bad arguments.

The PostgreSQL-only tests write run rows at chosen times (a database clock cannot move)
and check the query's plan on a long run log: it must read the recent end of the log
through the BRIN index on finished_at, not the whole table.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from typing import Any

import asyncpg
import orjson
import pytest

from pgqueue import (
    Activity,
    ActivityCounts,
    Cancel,
    ConfigError,
    Job,
    JobNotFound,
    LinearBackoff,
    Scheduler,
)
from pgqueue.testing import advance
from tests._support import running, until
from tests.contract._helpers import run_until_ended


def _index(activity: Activity, when: dt.datetime) -> int:
    """The bucket a run that ended at ``when`` belongs in."""
    b = activity.bucket_s
    return math.floor(when.timestamp() / b) - math.floor(activity.since.timestamp() / b)


async def _ran(s: Scheduler) -> dict[str, int]:
    """Jobs of every kind: a success, a final failure, a retried success, a cancel."""
    failed_once: set[int] = set()

    @s.job("ok", queue="a")
    async def ok(job: Job) -> None:
        return None

    @s.job("bad", queue="b")
    async def bad(job: Job) -> None:
        raise RuntimeError("for good")

    @s.job("flaky", queue="b", retry=LinearBackoff(3, 0))
    async def flaky(job: Job) -> None:
        if job.id not in failed_once:
            failed_once.add(job.id)
            raise RuntimeError("once")

    @s.job("quits", queue="a")
    async def quits(job: Job) -> None:
        raise Cancel("not today")

    ids: dict[str, int] = {
        "ok": await s.schedule("ok"),
        "bad": await s.schedule("bad"),
        "flaky": await s.schedule("flaky"),
        "quits": await s.schedule("quits"),
    }
    await run_until_ended(s, *ids.values())
    ids["idle"] = await s.schedule("ok", queue="idle")
    await s.cancel(ids["idle"])
    return ids


async def test_an_empty_log_gives_every_bucket_empty(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    activity = await s.activity(window_s=600, bucket_s=60)
    assert len(activity.buckets) == 10
    assert activity.by_queue == {}
    assert all(b.counts == ActivityCounts() for b in activity.buckets)
    assert activity.bucket_s == 60.0
    starts = [b.start for b in activity.buckets]
    assert starts[0] == activity.since
    assert [b - a for a, b in itertools.pairwise(starts)] == [dt.timedelta(seconds=60)] * 9
    assert activity.since.timestamp() % 60 == 0  # aligned, so a refreshed chart keeps its bars
    assert starts[-1] <= activity.until < starts[-1] + dt.timedelta(seconds=60)
    assert activity.since.tzinfo is not None
    assert activity.until.tzinfo is not None


async def test_runs_are_counted_by_kind_queue_and_bucket(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    ids = await _ran(s)
    activity = await s.activity(window_s=3600, bucket_s=60)
    assert activity.by_queue == {
        "a": ActivityCounts(succeeded=1, cancelled=1),
        "b": ActivityCounts(succeeded=1, failed=1, retried=1),
        "idle": ActivityCounts(cancelled=1),
    }
    assert activity.totals == ActivityCounts(succeeded=2, failed=1, retried=1, cancelled=2)
    assert len(activity.buckets) == 60
    expected = [0] * 60
    for job_id in ids.values():
        for run in (await s.get_job(job_id)).runs:
            expected[_index(activity, run.finished_at)] += 1
    assert [b.counts.total for b in activity.buckets] == expected


async def test_unlogged_runs_are_not_counted(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler

    @s.job("ok")
    async def ok(job: Job) -> None:
        return None

    job_id = await s.schedule("ok")

    async def gone() -> bool:  # no run logged: once ended, nothing knows the job
        try:
            await s.get_job(job_id)
        except JobNotFound:
            return True
        return False

    async with running(s.worker(poll_interval=3600, should_log_run=lambda job, run: False)):
        await until(gone)
    assert (await s.activity()).by_queue == {}


@pytest.mark.parametrize(
    ("window_s", "bucket_s"),
    [
        (0, 60),
        (3600, 0),
        (-1, 60),
        (3600, -60),
        (float("nan"), 60),
        (3600, float("inf")),
        (True, 60),
        ("3600", 60),
        (60, 120),  # a bucket longer than the window
        (86400 * 2, 60),  # 2,880 buckets
        (1441, 1),
        (1e-3, 1e-4),  # buckets under a millisecond
        (1e-300, 1e-302),
    ],
)
async def test_bad_arguments_raise_config_error_before_reading(
    backend_scheduler: Scheduler, window_s: object, bucket_s: object
) -> None:
    with pytest.raises(ConfigError):
        await backend_scheduler.activity(window_s=window_s, bucket_s=bucket_s)  # type: ignore[arg-type]


@pytest.mark.parametrize(("window_s", "bucket_s", "count"), [(1440, 1, 1440), (86400, 60, 1440), (90, 60, 2)])
async def test_the_window_is_rounded_up_to_whole_buckets(
    backend_scheduler: Scheduler, window_s: float, bucket_s: float, count: int
) -> None:
    activity = await backend_scheduler.activity(window_s=window_s, bucket_s=bucket_s)
    assert len(activity.buckets) == count


async def test_memory_runs_leave_the_window_as_its_clock_moves() -> None:
    """The in-memory clock moves: a run slides back one bucket a minute, then out."""
    s = Scheduler.in_memory()
    try:

        @s.job("ok")
        async def ok(job: Job) -> None:
            return None

        job_id = await s.schedule("ok")
        await run_until_ended(s, job_id)
        before = await s.activity(window_s=300, bucket_s=60)
        where = [b.counts.succeeded for b in before.buckets].index(1)
        advance(s, 60)
        after = await s.activity(window_s=300, bucket_s=60)
        assert [b.counts.succeeded for b in after.buckets].index(1) == where - 1
        advance(s, 300)
        assert (await s.activity(window_s=300, bucket_s=60)).by_queue == {}
    finally:
        await s.close()


# -- PostgreSQL only: rows at chosen times, and the plan on a long log -------------------

_INSERT_RUN = """
INSERT INTO {schema}.job_runs (job_id, inserted_at, run_at, started_at, finished_at, retry_at,
                               attempt, priority, queue, type, outcome)
SELECT g, t, t, t, t, CASE WHEN $3::text = 'retried' THEN t END, 1, 0, $4::text, 'x',
       CASE WHEN $3::text = 'retried' THEN 'timeout' ELSE $3::text END
FROM generate_series(1, $2::int) AS g, (SELECT now() - make_interval(secs => $1::float8) AS t) AS at
"""


async def _insert(db: asyncpg.Connection, schema: str, rows: list[tuple[float, int, str, str]]) -> None:
    """(seconds ago, how many, kind, queue) per group of run rows."""
    await db.executemany(_INSERT_RUN.replace("{schema}", f'"{schema}"'), rows)


async def test_postgres_rows_fall_in_their_buckets_and_old_ones_out(
    pg_only_scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """Rows written at known ages land in the bucket of their finished_at; older ones are left out.

    The memory backend's clock test above covers the same edges there.
    """
    s = pg_only_scheduler
    await _insert(
        db,
        s.schema,
        [
            (5, 2, "succeeded", "q1"),
            (125, 3, "failed", "q1"),
            (250, 1, "retried", "q2"),
            (250, 4, "crashed", "q2"),  # a final crash: a failure
            (1000, 7, "cancelled", "q2"),  # outside a 10-minute window
        ],
    )
    activity = await s.activity(window_s=600, bucket_s=60)
    assert activity.by_queue == {
        "q1": ActivityCounts(succeeded=2, failed=3),
        "q2": ActivityCounts(failed=4, retried=1),
    }
    finished = await db.fetch(f'SELECT finished_at, count(*) AS n FROM "{s.schema}".job_runs GROUP BY 1')
    expected = [0] * 10
    for row in finished:
        i = _index(activity, row["finished_at"])
        if 0 <= i < 10:
            expected[i] += row["n"]
    assert sum(expected) == 10
    assert [b.counts.total for b in activity.buckets] == expected
    wide = await s.activity(window_s=3600, bucket_s=600)
    assert wide.totals == ActivityCounts(succeeded=2, failed=7, retried=1, cancelled=7)


async def test_postgres_reads_the_recent_end_of_a_long_log_from_the_recent_partitions(
    pg_only_scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """1M runs from last month and 100 recent ones: the plan reads only the window's partitions.

    ``job_runs`` is partitioned by the day a run finished; the month-old runs sit in a
    DEFAULT partition here (no day partitions were made for them), which the plan must prune.
    The figure: the buffers the whole plan touched, against that partition's pages.
    """
    s = pg_only_scheduler
    table = f'"{s.schema}".job_runs'
    # Shortly after midnight (UTC) the window reaches into yesterday, which needs its own
    # partition for the plan to leave the DEFAULT one out (retention makes them days ahead).
    await db.execute(f"SELECT \"{s.schema}\".runs_partition_ensure((now() AT TIME ZONE 'UTC')::date - 1)")
    await db.execute(
        f"INSERT INTO {table} (job_id, inserted_at, run_at, started_at, finished_at, attempt, "
        "priority, queue, type, outcome) "
        "SELECT g, t, t, t, t, 1, 0, 'old', 'x', 'succeeded' FROM generate_series(1, 1000000) AS g, "
        "LATERAL (SELECT now() - interval '30 days' + g * interval '1 second' AS t) AS at"
    )
    await _insert(db, s.schema, [(30, 100, "succeeded", "new")])
    await db.execute(f"VACUUM ANALYZE {table}")
    old = f'"{s.schema}".job_runs_done_default'
    pages = await db.fetchval("SELECT relpages FROM pg_class WHERE oid = $1::regclass", old)
    assert pages > 1000  # the old runs are where this test says they are

    from pgqueue.store.postgres.queries import QUERIES

    sql = QUERIES.for_schema(s.schema).job_runs_activity
    async with db.transaction():
        await db.execute("SET LOCAL plan_cache_mode = force_custom_plan")  # as the store plans it
        plan_json = await db.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", 60.0, 60)
    plan = orjson.loads(plan_json)[0]["Plan"]
    scanned = {n["Relation Name"] for n in _walk(plan) if "Relation Name" in n}
    assert scanned, plan
    assert all(name.startswith("job_runs_") and not name.endswith("_default") for name in scanned), scanned
    touched = plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
    assert touched < pages / 20, (touched, pages)
    assert (await s.activity()).by_queue == {"new": ActivityCounts(succeeded=100)}


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for child in node.get("Plans", []):
        found += _walk(child)
    return found
