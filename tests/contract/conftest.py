"""The contract suite: the same behavioural tests on both backends.

``backend_scheduler`` is a Scheduler on the in-memory backend or on a fresh PostgreSQL
schema (River's driver tests are the model). What the in-memory backend cannot honour
(another process, crash rescue, a caller's transaction; see ``pgqueue/store/memory``)
takes ``pg_only_scheduler`` instead, which is not parametrised: those tests run once, on
PostgreSQL, and say in their docstring why memory cannot. The deeper PostgreSQL-only
checks (SQL, locks, faults) live in ``tests/integration``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pgqueue import Scheduler
from tests._support import drop_schema


@pytest.fixture(params=["memory", "postgres"])
async def backend_scheduler(request: pytest.FixtureRequest) -> AsyncIterator[Scheduler]:
    """A scheduler on each backend in turn; the PostgreSQL one on the test's own schema."""
    if request.param == "memory":
        s = Scheduler.in_memory()
        try:
            yield s
        finally:
            await s.close()
        return
    dsn: str = request.getfixturevalue("dsn")
    schema: str = request.getfixturevalue("schema_name")
    s = Scheduler(dsn, schema=schema)
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()
        await drop_schema(dsn, schema)


@pytest.fixture
def backend(backend_scheduler: Scheduler) -> str:
    """Which backend ``backend_scheduler`` is on: "memory" or "postgres"."""
    return "memory" if backend_scheduler.schema == "memory" else "postgres"


@pytest.fixture
def pg_only_scheduler(scheduler: Scheduler) -> Scheduler:
    """The PostgreSQL backend alone, for a behaviour the in-memory backend cannot honour."""
    return scheduler
