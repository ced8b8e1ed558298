"""The long CLI operations: bulk retry and cancel, ``jobs list --all``, ``migrate --print-sql``.

Run in this process through ``main()`` (coverage sees them), against the test server; the
progress bar is checked in a pseudo-terminal, as a person sees it, and checked absent when
the output is piped.
"""

from __future__ import annotations

import asyncio
import json
import os

import asyncpg
import pytest

from pgqueue import JobState, Scheduler
from pgqueue.cli import bulk
from tests._support import drop_schema
from tests.contract._helpers import raising, run_until_ended
from tests.integration._cli import in_a_terminal, run_main

pytestmark = pytest.mark.pg


def _fail_jobs(dsn: str, schema: str, queues: dict[str, int]) -> list[int]:
    """Schedule ``n`` jobs per queue that fail for good on their first run, and run them."""

    async def go() -> list[int]:
        async with Scheduler(dsn, schema=schema) as s:
            s.register("boom", raising(ValueError, "no"))
            ids = [int(await s.schedule("boom", i, queue=q)) for q, n in queues.items() for i in range(n)]
            records = await run_until_ended(s, *ids, queues=list(queues))
            assert {r.state for r in records} == {JobState.FAILED}
            return ids

    return asyncio.run(go())


def _states(dsn: str, schema: str, ids: list[int]) -> list[JobState]:
    async def go() -> list[JobState]:
        async with Scheduler(dsn, schema=schema) as s:
            return [(await s.get_job(i)).state for i in ids]

    return asyncio.run(go())


def test_retry_failed_retries_in_chunks_within_the_filter(
    main_env: None,
    dsn: str,
    schema_name: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bulk, "RETRY_CHUNK", 3)  # 7 jobs: three statements
    ids = _fail_jobs(dsn, schema_name, {"a": 7, "b": 2})
    code, out, err = run_main(capsys, "jobs", "retry-failed", "--queue", "a", "--json")
    assert (code, err) == (0, "")  # piped: no progress bar
    assert json.loads(out) == {"retried": 7, "ids": ids[:7]}
    assert _states(dsn, schema_name, ids) == [JobState.PENDING] * 7 + [JobState.FAILED] * 2

    code, out, _ = run_main(capsys, "jobs", "retry-failed")
    assert (code, out.strip()) == (0, "retried 2 failed jobs")
    assert run_main(capsys, "jobs", "retry-failed")[1].strip() == "retried 0 failed jobs"


def test_cancel_all_needs_a_filter_and_cancels_what_it_matches(
    main_env: None, dsn: str, schema_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(capsys, "jobs", "cancel-all")
    assert code == 2
    assert "give --queue or --type" in err
    for queue in ("a", "a", "b"):
        assert run_main(capsys, "schedule", "t", "--queue", queue)[0] == 0
    code, out, _ = run_main(capsys, "jobs", "cancel-all", "--queue", "a", "--json")
    assert (code, json.loads(out)) == (0, {"cancelled": 2, "cancelling": 0})
    assert _states(dsn, schema_name, [1, 2, 3]) == [JobState.CANCELLED] * 2 + [JobState.PENDING]
    code, out, _ = run_main(capsys, "jobs", "cancel-all", "--type", "t")
    assert (code, out.strip()) == (
        0,
        "cancelled 1 waiting job(s); asked the workers of 0 running job(s) to stop them",
    )


def test_list_all_reads_every_page(main_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    for n in range(5):
        assert run_main(capsys, "schedule", "t", str(n))[0] == 0
    code, out, err = run_main(capsys, "jobs", "list", "--all", "--limit", "2", "--json")
    assert (code, err) == (0, "")
    listed = json.loads(out)
    assert [j["id"] for j in listed["items"]] == [5, 4, 3, 2, 1]
    assert listed["cursor"] is None
    table = run_main(capsys, "jobs", "list", "--all", "--limit", "2")[1]
    assert "next page" not in table
    assert sum(" t " in line for line in table.splitlines()) == 5


def test_progress_bar_is_drawn_on_a_terminal(
    main_env: None, dsn: str, schema_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """In a pseudo-terminal the bulk retry draws its bar (transient: gone when done)."""
    _fail_jobs(dsn, schema_name, {"a": 3})
    env = {**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": schema_name}
    code, screen = in_a_terminal(["jobs", "retry-failed"], env)
    assert code == 0, screen
    assert "retrying" in screen
    assert "3/3" in screen  # the bar's count when the last chunk is done
    assert "failed jobs\r\n" in screen  # the result line, after the bar is gone


def test_print_sql_is_the_script_migrate_would_run(
    dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = 'pgq "print" sql'  # needs quoting everywhere the script names it
    monkeypatch.setenv("PGQUEUE_DSN", dsn)
    monkeypatch.setenv("PGQUEUE_SCHEMA", schema)
    try:
        code, script, _ = run_main(capsys, "migrate", "--print-sql")
        assert code == 0
        assert script.startswith("-- pgqueue migrations 1..")
        assert '"pgq ""print"" sql"' in script
        assert script.rstrip().endswith("COMMIT;")

        async def nothing_then_apply() -> None:
            conn = await asyncpg.connect(dsn)
            try:
                exists = await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema)
                assert not exists  # printing applied nothing
                await conn.execute(script)  # as psql would run it
            finally:
                await conn.close()

        asyncio.run(nothing_then_apply())
        code, out, err = run_main(capsys, "migrate")
        assert (code, out.strip()) == (0, f"schema {schema!r}: up to date")
        code, out, err = run_main(capsys, "migrate", "--print-sql")
        assert (code, out) == (0, "")
        assert "up to date, nothing to print" in err

        async def check() -> None:
            async with Scheduler(dsn, schema=schema) as s:
                s.register("t", raising(ValueError))
                await s.schedule("t", None)
                assert (await s.stats()).by_queue["default"][JobState.PENDING] == 1

        asyncio.run(check())
    finally:
        asyncio.run(drop_schema(dsn, schema))
