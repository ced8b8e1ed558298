"""``pgqueue prune``: the round on demand, its dry run, its progress bar, and bad durations.

Run in this process through ``main()``; the progress bar in a pseudo-terminal, as a person
sees it, and absent when piped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os

import asyncpg
import pytest

from pgqueue.store.postgres import PostgresStore, create_pool
from pgqueue.store.retention_plan import partition_name
from tests.integration._cli import in_a_terminal, run_main

pytestmark = pytest.mark.pg

DAY = dt.timedelta(days=1)


def _old_days(dsn: str, schema: str, ages: list[int]) -> list[dt.date]:
    """Partitions for these days back, each with one succeeded run; the days."""
    today = dt.datetime.now(dt.UTC).date()
    days = [today - n * DAY for n in ages]

    async def go() -> None:
        pool = await create_pool(dsn, min_size=1, max_size=2)
        try:
            store = PostgresStore(pool, schema)
            for day in days:
                await store.runs_partition_ensure(day, 5.0)
            await pool.executemany(
                f"""INSERT INTO "{schema}".job_runs (job_id, inserted_at, run_at, started_at, finished_at,
                        attempt, priority, queue, type, outcome)
                    VALUES ($1, $2::timestamptz, $2, $2, $2, 1, 0, 'default', 't', 'succeeded')""",
                [(i, dt.datetime.combine(day, dt.time(12), dt.UTC)) for i, day in enumerate(days, 1)],
            )
        finally:
            await pool.close()

    asyncio.run(go())
    return days


def _runs(dsn: str, schema: str) -> int:
    async def go() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            n: int = await conn.fetchval(f'SELECT count(*) FROM "{schema}".job_runs')
            return n
        finally:
            await conn.close()

    return asyncio.run(go())


def test_prune_drops_the_expired_days_once(
    main_env: None, dsn: str, schema_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    days = _old_days(dsn, schema_name, [3, 10, 20])
    code, out, err = run_main(capsys, "prune", "--older-than", "7d", "--failed-older-than", "2w", "--json")
    assert (code, err) == (0, "")  # piped: no progress bar
    result = json.loads(out)
    # Days 10 and 20 back go in the done tree; the failed tree (14 days) only day 20.
    assert result["partitions_dropped"] == [
        partition_name("done", days[2]),
        partition_name("failed", days[2]),
        partition_name("done", days[1]),
    ]
    assert (result["rows_deleted"], result["dry_run"], result["busy"]) == (0, False, [])
    assert _runs(dsn, schema_name) == 1
    code, out, _ = run_main(capsys, "prune", "--older-than", "7d", "--failed-older-than", "2w")
    assert code == 0
    assert out.startswith("dropped 0 partitions (runs before ")
    assert out.rstrip().endswith("created 0, deleted 0 rows")


def test_dry_run_says_what_it_would_do_and_does_nothing(
    main_env: None, dsn: str, schema_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _old_days(dsn, schema_name, [20, 40])
    code, out, err = run_main(capsys, "prune", "--dry-run")
    assert (code, err) == (0, "")
    assert out.startswith("would drop 3 partitions (runs before ")  # done 20 and 40, failed 40
    assert "would create 2, would delete 0 rows" in out  # today + 3 days is not there yet
    assert _runs(dsn, schema_name) == 2
    code, out, _ = run_main(capsys, "prune")
    assert out.startswith("dropped 3 partitions")
    assert _runs(dsn, schema_name) == 0


def test_prune_draws_a_progress_bar_in_a_terminal(main_env: None, dsn: str, schema_name: str) -> None:
    """In a pseudo-terminal the round draws its bar (transient: gone when done)."""
    _old_days(dsn, schema_name, [3, 4, 5])
    env = {**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": schema_name}
    code, screen = in_a_terminal(["prune", "--older-than", "1d", "--failed-older-than", "1d"], env)
    assert code == 0, screen
    assert "pruning" in screen
    assert "7/7" in screen  # one day created ahead, six partitions dropped
    assert "dropped 6 partitions" in screen


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "3x"], "--older-than takes a number and a unit"),
        (["--older-than", "14"], "--older-than takes a number and a unit"),
        (["--older-than", "-1d"], "--older-than takes a number and a unit"),
        (["--older-than", "0s"], "--older-than must be a positive duration"),
        (["--older-than", "999999999999w"], "--older-than is too long"),
        (
            ["--older-than", "30d", "--failed-older-than", "2d"],
            "--failed-older-than (2 days, 0:00:00) must be at least",
        ),
        (["--older-than", "40d"], None),  # failed runs then default to 40 days too: fine
    ],
)
def test_bad_durations_are_one_line_and_exit_2(
    main_env: None, capsys: pytest.CaptureFixture[str], args: list[str], message: str | None
) -> None:
    code, out, err = run_main(capsys, "prune", "--dry-run", *args)
    if message is None:
        assert (code, err) == (0, "")
        return
    assert (code, out) == (2, "")
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err
