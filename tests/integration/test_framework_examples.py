"""The framework examples (SQLAlchemy, FastAPI) against the test server, each on its own schema."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from types import ModuleType

import anyio
import asyncpg
import httpx2
import pytest
from starlette.types import Message, Receive, Scope, Send

from pgqueue import JobNotFound, JobState
from tests._support import ROOT_DIR, WAIT_S, drop_schema

pytestmark = pytest.mark.pg


def fresh_import(name: str, dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import an example anew: it reads PGQUEUE_DSN and PGQUEUE_SCHEMA at import."""
    monkeypatch.setenv("PGQUEUE_DSN", dsn)
    monkeypatch.setenv("PGQUEUE_SCHEMA", schema)
    sys.modules.pop(name, None)
    return importlib.import_module(name)


async def job_count(db: asyncpg.Connection, schema: str) -> int:
    count: int = await db.fetchval(f'SELECT count(*) FROM "{schema}".jobs')
    return count


# -- SQLAlchemy ------------------------------------------------------------------------------


@pytest.fixture
async def sa_example(
    dsn: str, schema_name: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ModuleType]:
    module = fresh_import("examples.sqlalchemy_enqueue", dsn, schema_name, monkeypatch)
    try:
        await module.setup()
        yield module
    finally:
        await module.engine.dispose()
        await module.scheduler.close()
        sys.modules.pop("examples.sqlalchemy_enqueue", None)
        await drop_schema(dsn, schema_name)


async def test_sqlalchemy_commit_stores_order_and_job_and_a_worker_runs_it(
    sa_example: ModuleType, db: asyncpg.Connection, schema_name: str
) -> None:
    ex = sa_example
    async with ex.engine.begin() as conn:
        order_id, job_id = await ex.place_order(conn, "ada@example.com", 4200)
        # Inside the block, another connection sees neither: both wait for the commit.
        assert await db.fetchval(f'SELECT count(*) FROM "{schema_name}".orders') == 0
        assert await job_count(db, schema_name) == 0
    assert (await ex.scheduler.get_job(job_id)).state is JobState.PENDING
    assert (await ex.scheduler.get_job(job_id)).params == {"order_id": order_id}
    worker = ex.scheduler.worker(queues=["orders"], concurrency=2)
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        done = await ex.scheduler.wait(job_id, timeout=WAIT_S)
        await worker.shutdown()
    assert (done.state, done.result) == (JobState.SUCCEEDED, order_id)
    confirmed = await db.fetchval(f'SELECT confirmed FROM "{schema_name}".orders WHERE id = $1', order_id)
    assert confirmed is True


async def test_sqlalchemy_rollback_leaves_neither_order_nor_job(
    sa_example: ModuleType, db: asyncpg.Connection, schema_name: str
) -> None:
    ex = sa_example
    placed: list[int] = []

    async def place_then_decline() -> None:
        async with ex.engine.begin() as conn:
            placed.extend(await ex.place_order(conn, "bob@example.com", 990_000))
            raise ex.PaymentDeclinedError

    with pytest.raises(ex.PaymentDeclinedError):
        await place_then_decline()
    order_id, job_id = placed
    assert await db.fetchval(f'SELECT count(*) FROM "{schema_name}".orders') == 0
    assert await job_count(db, schema_name) == 0
    with pytest.raises(JobNotFound):
        await ex.scheduler.get_job(job_id)
    assert order_id >= 1


async def test_sqlalchemy_job_scheduled_before_any_statement_still_joins_the_transaction(
    sa_example: ModuleType, db: asyncpg.Connection, schema_name: str
) -> None:
    """SQLAlchemy sends BEGIN with the first statement: the helper must send it first."""
    ex = sa_example

    async def schedule_first_then_decline() -> None:
        async with ex.engine.begin() as conn:
            raw = await ex.asyncpg_connection(conn)
            assert raw.is_in_transaction()
            await ex.scheduler.schedule("confirm_order", {"order_id": 1}, conn=raw)
            raise ex.PaymentDeclinedError

    with pytest.raises(ex.PaymentDeclinedError):
        await schedule_first_then_decline()
    assert await job_count(db, schema_name) == 0


def test_sqlalchemy_example_runs_as_a_script(dsn: str, schema_name: str) -> None:
    try:
        res = subprocess.run(
            [sys.executable, "-m", "examples.sqlalchemy_enqueue"],
            capture_output=True,
            text=True,
            cwd=ROOT_DIR,
            timeout=120,
            env={**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": schema_name},
            check=False,
        )
    finally:
        anyio.run(drop_schema, dsn, schema_name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Committed order 1 with its job 1." in res.stdout
    assert "Job 2 exists: False." in res.stdout
    assert "Example finished." in res.stdout


# -- FastAPI ---------------------------------------------------------------------------------


@pytest.fixture
def fastapi_example(dsn: str, schema_name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    module = fresh_import("examples.fastapi_app", dsn, schema_name, monkeypatch)
    try:
        yield module
    finally:
        sys.modules.pop("examples.fastapi_app", None)
        anyio.run(drop_schema, dsn, schema_name)


ResponseStartHook = Callable[[], Awaitable[None]]


@asynccontextmanager
async def serving(
    example: ModuleType, on_response_start: ResponseStartHook | None = None
) -> AsyncIterator[httpx2.AsyncClient]:
    """A client of the app with its lifespan running (worker included) in the test's task.

    A context manager, not a fixture: the lifespan's task group must be entered and left
    in one task, and pytest-asyncio sets a fixture up and tears it down in different ones.
    ``on_response_start`` runs when the app starts its response, before the client sees it.
    """
    app = example.app

    async def watched(scope: Scope, receive: Receive, send: Send) -> None:
        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and on_response_start is not None:
                await on_response_start()
            await send(message)

        await app(scope, receive, watch)

    transport = httpx2.ASGITransport(app=watched)
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        yield client


async def test_fastapi_order_is_confirmed_by_the_worker_in_the_lifespan(fastapi_example: ModuleType) -> None:
    ex = fastapi_example
    async with serving(ex) as api:
        placed = await api.post("/orders", json={"email": "ada@example.com", "sku": "tea", "quantity": 2})
        assert placed.status_code == 201, placed.text
        order_id, job_id = placed.json()["id"], placed.json()["job_id"]
        done = await ex.scheduler.wait(job_id, timeout=WAIT_S)
        assert done.state is JobState.SUCCEEDED
        view = await api.get(f"/orders/{order_id}")
        assert view.status_code == 200, view.text
        assert view.json() == {
            "id": order_id,
            "email": "ada@example.com",
            "sku": "tea",
            "quantity": 2,
            "job_id": job_id,
            "job_state": "succeeded",
            "job_result": {"sent_to": "ada@example.com"},
        }
        assert (await api.get("/orders/999")).status_code == 404
    sent: list[str] = ex.OUTBOX
    assert sent == [f"order {order_id} confirmed to ada@example.com"]


async def test_fastapi_commits_before_the_response_starts(
    fastapi_example: ModuleType, db: asyncpg.Connection, schema_name: str
) -> None:
    """The transaction dependency's scope: a client that reads 201 can read the order."""
    seen: list[int] = []

    async def count_committed() -> None:
        seen.append(await job_count(db, schema_name))

    async with serving(fastapi_example, on_response_start=count_committed) as api:
        placed = await api.post("/orders", json={"email": "ada@example.com", "sku": "tea", "quantity": 1})
        assert placed.status_code == 201, placed.text
    assert seen == [1]


async def test_fastapi_failed_request_rolls_back_order_and_job(
    fastapi_example: ModuleType, db: asyncpg.Connection, schema_name: str
) -> None:
    async with serving(fastapi_example) as api:
        first = await api.post("/orders", json={"email": "ann@example.com", "sku": "teapot", "quantity": 1})
        assert first.status_code == 201, first.text
        # The last teapot is gone: this order's job is scheduled, then taking the stock fails.
        second = await api.post("/orders", json={"email": "bob@example.com", "sku": "teapot", "quantity": 1})
        assert second.status_code == 409, second.text
        unknown = await api.post("/orders", json={"email": "cy@example.com", "sku": "mug", "quantity": 1})
        assert unknown.status_code == 422, unknown.text
    orders = await db.fetch(f'SELECT id, email, job_id FROM "{schema_name}".orders')
    assert [(r["id"], r["email"], r["job_id"]) for r in orders] == [
        (first.json()["id"], "ann@example.com", first.json()["job_id"])
    ]
    # Live jobs and logged runs: the refused order's job is in neither.
    jobs = await db.fetch(
        f'SELECT id FROM "{schema_name}".jobs UNION SELECT job_id FROM "{schema_name}".job_runs'
    )
    assert [r["id"] for r in jobs] == [first.json()["job_id"]]
    assert await db.fetchval(f'SELECT stock FROM "{schema_name}".products WHERE sku = $1', "teapot") == 0


async def test_fastapi_mounts_the_dashboard_under_jobs(fastapi_example: ModuleType) -> None:
    async with serving(fastapi_example) as api:
        page = await api.get("/jobs/")
        assert page.status_code == 200, page.text
        assert "text/html" in page.headers["content-type"]
