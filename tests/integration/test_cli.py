"""The `pgqueue` command: migrate, and a worker process stopped by signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import asyncpg
import pytest

from pgqueue import Scheduler
from pgqueue.store.postgres.migrate import LATEST_VERSION
from tests._support import ROOT_DIR, until

pytestmark = pytest.mark.pg


def _pgqueue(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgqueue", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT_DIR,
        timeout=60,
        check=False,
    )


def _env(dsn: str, schema: str) -> dict[str, str]:
    return {**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": schema}


async def test_migrate_command(dsn: str, schema_name: str, db: asyncpg.Connection) -> None:
    try:
        first = _pgqueue("migrate", env=_env(dsn, schema_name))
        assert first.returncode == 0, first.stderr
        assert f"schema '{schema_name}': applied {list(range(1, LATEST_VERSION + 1))}" in first.stdout
        second = _pgqueue("migrate", env=_env(dsn, schema_name))
        assert "up to date" in second.stdout
    finally:
        await db.execute(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')


def test_migrate_command_errors(schema_name: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PGQUEUE_DSN"}
    bad = _pgqueue("migrate", "--dsn", "postgresql://nobody@127.0.0.1:1/x", env=env)
    assert bad.returncode == 1
    assert bad.stderr.startswith("error:")


def test_worker_command_rejects_a_bad_target(dsn: str) -> None:
    env = _env(dsn, "unused")
    for target, message in [
        ("nocolon", "module:attribute"),
        ("no_such_module_xyz:app", "cannot import"),
        ("tests.cli_app:not_a_scheduler", "not a pgqueue.Scheduler"),
    ]:
        res = _pgqueue("worker", target, env=env)
        assert res.returncode == 2, res
        assert message in res.stderr


async def _wait_rows(db: asyncpg.Connection, sql: str, want: int) -> None:
    async def enough() -> bool:
        return bool(await db.fetchval(sql) >= want)

    await until(enough)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_worker_process_sigterm_is_graceful_and_second_signal_hard_stops(
    dsn: str, scheduler: Scheduler, db: asyncpg.Connection, tmp_path: Path, loop: str
) -> None:
    schema = scheduler.schema
    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen(  # noqa: ASYNC220 - starting the worker process under test
        [sys.executable, "-m", "pgqueue", "worker", "tests.cli_app:scheduler", "--concurrency", "4",
         "--loop", loop],
        env=_env(dsn, schema), cwd=ROOT_DIR, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        await _wait_rows(db, f'SELECT count(*) FROM "{schema}".workers', 1)
        scheduler.register("echo", lambda job: None)
        scheduler.register("hang", lambda job: None)
        await scheduler.schedule_many("echo", [1, 2, 3])
        await _wait_rows(db, f'SELECT count(*) FROM "{schema}".job_runs', 3)
        hung = await scheduler.schedule("hang")
        await _wait_rows(db, f'SELECT count(*) FROM "{schema}".jobs WHERE worker_id IS NOT NULL', 1)

        proc.send_signal(signal.SIGTERM)  # graceful: waits for the hanging job
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
        proc.send_signal(signal.SIGTERM)  # second signal: stop now
        assert proc.wait(timeout=30) == 0, (tmp_path / "worker.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    # The hanging job was released for another worker, not lost; the worker row is gone.
    row = await db.fetchrow(f'SELECT worker_id, attempt FROM "{schema}".jobs WHERE id = $1', hung)
    assert row is not None
    assert row["worker_id"] is None
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".workers') == 0


async def test_a_sigkilled_worker_process_has_its_job_rescued_and_rerun(
    dsn: str, scheduler: Scheduler, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """The worker process dies mid-run (SIGKILL: no clean-up at all). A live worker reaps it
    after dead_after, records the cut run as crashed, and runs the job again."""
    schema = scheduler.schema
    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen(  # noqa: ASYNC220 - starting the worker process under test
        [sys.executable, "-m", "pgqueue", "worker", "tests.cli_app:scheduler",
         "--heartbeat-interval", "0.1", "--dead-after", "0.5"],
        env=_env(dsn, schema), cwd=ROOT_DIR, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        scheduler.register("hang_first_run", lambda job: None)
        job_id = await scheduler.schedule("hang_first_run")
        await _wait_rows(db, f'SELECT count(*) FROM "{schema}".jobs WHERE worker_id IS NOT NULL', 1)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    from tests.cli_app import hang_first_run

    rescuer = Scheduler(dsn, schema=schema)
    rescuer.register("hang_first_run", hang_first_run)
    try:
        async with anyio.create_task_group() as tg:
            worker = rescuer.worker(heartbeat_interval=0.1, dead_after=0.5)
            await tg.start(worker.run)
            await _wait_rows(db, f"SELECT count(*) FROM \"{schema}\".job_runs WHERE outcome = 'succeeded'", 1)
            await worker.shutdown()
    finally:
        await rescuer.close()
    rows = await db.fetch(
        f'SELECT attempt, outcome, result FROM "{schema}".job_runs WHERE job_id = $1 ORDER BY attempt', job_id
    )
    assert [(r["attempt"], r["outcome"]) for r in rows] == [(1, "crashed"), (2, "succeeded")]
    assert rows[1]["result"] == '"second run"'
