"""Migrations: idempotent, concurrent-safe, version-checked in both directions."""

from __future__ import annotations

import anyio
import asyncpg
import pytest

from pgqueue import Job, Scheduler, SchemaNotMigratedError, SchemaTooNewError
from pgqueue.store.postgres.migrate import LATEST_VERSION

pytestmark = pytest.mark.pg


async def test_migrate_is_idempotent(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    assert await scheduler.migrate() == []
    versions = [r[0] for r in await db.fetch(f'SELECT version FROM "{scheduler.schema}".schema_version')]
    assert versions == list(range(1, LATEST_VERSION + 1))


async def test_concurrent_migrators_apply_once(dsn: str, schema_name: str, db: asyncpg.Connection) -> None:
    schedulers = [Scheduler(dsn, schema=schema_name) for _ in range(4)]
    applied: list[list[int]] = []

    async def go(s: Scheduler) -> None:
        applied.append(await s.migrate())

    try:
        async with anyio.create_task_group() as tg:
            for s in schedulers:
                tg.start_soon(go, s)
        assert sorted(map(tuple, applied)) == [(), (), (), tuple(range(1, LATEST_VERSION + 1))]
    finally:
        for s in schedulers:
            await s.close()
        await db.execute(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')


async def test_worker_refuses_an_unmigrated_schema(dsn: str, schema_name: str) -> None:
    s = Scheduler(dsn, schema=schema_name)
    s.register("noop", lambda job: None)
    try:
        with pytest.raises(SchemaNotMigratedError, match="pgqueue migrate"):
            await s.worker().run()
    finally:
        await s.close()


async def test_newer_schema_is_refused(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    await db.execute(
        f'INSERT INTO "{scheduler.schema}".schema_version (version, name) VALUES ($1, $2)',
        LATEST_VERSION + 1, "from_the_future",
    )  # fmt: skip
    with pytest.raises(SchemaTooNewError, match="upgrade pgqueue"):
        await scheduler.migrate()

    @scheduler.job("noop")
    async def noop(job: Job) -> None: ...

    with pytest.raises(SchemaTooNewError):
        await scheduler.worker().run()


async def test_migrations_create_the_tables_in_the_configured_schema(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    tables = {
        r[0]
        for r in await db.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", scheduler.schema
        )
    }
    assert tables == {"jobs", "job_runs", "workers", "schema_version"}
    assert await db.fetchval("SELECT to_regclass('public.jobs')") is None
