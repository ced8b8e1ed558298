"""Migrations: idempotent, concurrent-safe, version-checked in both directions."""

from __future__ import annotations

import anyio
import asyncpg
import pytest

from pgqueue import Job, Scheduler, SchemaNotMigratedError, SchemaTooNewError
from pgqueue.store.postgres.migrate import LATEST_VERSION, load_migrations
from tests._support import Counter, hot_empty, running, until, wait

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
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
            scheduler.schema,
        )
    }
    assert tables == {
        "jobs",
        "job_runs",
        "workers",
        "schema_version",
        "unique_keys",
        "job_dependencies",
        "periodic",
        "queue_limits",
        "queue_starts",
        "queue_leases",
    }
    assert await db.fetchval("SELECT to_regclass('public.jobs')") is None


async def test_a_version_1_database_with_live_jobs_upgrades_without_losing_or_rerunning_any(
    dsn: str, schema_name: str, db: asyncpg.Connection
) -> None:
    """Build the schema as pgqueue 1 left it (migration 1 only) with jobs in every live
    shape, migrate, and run them: each runs exactly once, none is lost."""
    [(version, name, sql)] = load_migrations()[:1]
    async with db.transaction():
        await db.execute(f'CREATE SCHEMA "{schema_name}"')
        await db.execute(
            f'CREATE TABLE "{schema_name}".schema_version '
            "(version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await db.execute(f'SET LOCAL search_path TO "{schema_name}"')
        await db.execute(sql)
        await db.execute(
            f'INSERT INTO "{schema_name}".schema_version (version, name) VALUES ($1, $2)', version, name
        )
        # Due now, due later, and put back after a failed run (attempt 1, errors 1).
        await db.execute(
            f"""INSERT INTO "{schema_name}".jobs (queue, type, params, run_at, delayed, attempt, errors)
                VALUES ('default', 't', '1', now(), false, 0, 0),
                       ('default', 't', '2', now() + interval '1 second', true, 0, 0),
                       ('default', 't', '3', now(), true, 1, 1)"""
        )
    s = Scheduler(dsn, schema=schema_name)
    done = Counter(3)

    @s.job("t")
    async def t(job: Job) -> None:
        done.hit((job.params, job.attempt))

    try:
        assert await s.migrate() == list(range(2, LATEST_VERSION + 1))
        assert await db.fetchval(f'SELECT count(*) FROM "{schema_name}".jobs') == 3
        async with running(s.worker(poll_interval=0.2)):
            await wait(done.done)
            await until(lambda: hot_empty(db, schema_name))
        assert sorted(done.calls) == [(1, 1), (2, 1), (3, 2)]  # once each; the retry goes on counting
        outcomes = await db.fetch(
            f'SELECT params::text, attempt, outcome FROM "{schema_name}".job_runs ORDER BY 1'
        )
        assert [(r[0], r[1], r[2]) for r in outcomes] == [
            ("1", 1, "succeeded"),
            ("2", 1, "succeeded"),
            ("3", 2, "succeeded"),
        ]
    finally:
        await s.close()
        await db.execute(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')
