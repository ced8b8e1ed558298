"""Fault classes a new user hit: odd exceptions from handlers, non-finite numbers, an
unmigrated schema, an application's own pool, a worker whose clock is off."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import warnings
from collections.abc import Callable
from typing import Any

import anyio
import asyncpg
import pytest

from pgqueue import (
    ConfigError,
    Job,
    LinearBackoff,
    ParamsEncodeError,
    Scheduler,
    SchemaNotMigratedError,
    Worker,
)
from pgqueue._config import WorkerConfig
from pgqueue.store.postgres.pool import HeldConnection
from tests._support import Counter, fired, hot_count, pg_store, running, runs, until, wait

pytestmark = pytest.mark.pg


BASE_EXCEPTIONS: list[tuple[str, Callable[[], BaseException]]] = [
    ("KeyboardInterrupt", KeyboardInterrupt),
    ("SystemExit", lambda: SystemExit(3)),
    ("CancelledError", asyncio.CancelledError),
    ("GeneratorExit", GeneratorExit),
]


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize(("name", "make"), BASE_EXCEPTIONS, ids=[n for n, _ in BASE_EXCEPTIONS])
async def test_a_handler_base_exception_fails_the_run_and_the_worker_carries_on(
    scheduler: Scheduler, db: asyncpg.Connection, name: str, make: Callable[[], BaseException], sync: bool
) -> None:
    """The run is recorded as failed with the exception's type and traceback, goes through
    the retry filter (default retry_on covers it), and the worker keeps running other jobs."""
    after = Counter(1)

    if sync:

        @scheduler.job("bad", retry=LinearBackoff(max_retries=1, base_delay=0))
        def bad_sync(job: Job) -> None:
            raise make()

    else:

        @scheduler.job("bad", retry=LinearBackoff(max_retries=1, base_delay=0))
        async def bad(job: Job) -> None:
            raise make()

    @scheduler.job("after")
    async def after_job(job: Job) -> None:
        after.hit(job.id)

    worker = scheduler.worker(poll_interval=60)
    async with running(worker):
        bad_id = await scheduler.schedule("bad")

        async def both_runs_logged() -> bool:
            return len(await runs(db, scheduler.schema, bad_id)) == 2

        await until(both_runs_logged)
        await scheduler.schedule("after")
        await wait(after.done)
    rows = await runs(db, scheduler.schema, bad_id)
    assert [(r["attempt"], r["outcome"]) for r in rows] == [(1, "failed"), (2, "failed")]
    assert rows[0]["retry_at"] is not None  # the filter retried it once
    assert rows[1]["retry_at"] is None  # then it was final
    for r in rows:
        assert name in r["error"]
        assert "Traceback" in r["error"]
    assert await hot_count(db, scheduler.schema) == 0


async def test_a_handler_base_exception_never_escapes_run(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """worker.run() keeps running after a handler raised SystemExit and a CancelledError: it
    returns only when shut down, and no exception (group) comes out of it."""
    done = Counter(3)

    @scheduler.job("exit")
    async def exit_job(job: Job) -> None:
        done.hit("exit")
        raise SystemExit(3)

    @scheduler.job("cancelled")
    async def cancelled_job(job: Job) -> None:
        done.hit("cancelled")
        raise asyncio.CancelledError

    @scheduler.job("fine")
    async def fine(job: Job) -> None:
        done.hit("fine")

    worker = scheduler.worker(poll_interval=60, concurrency=1)
    returned = anyio.Event()

    async def run_it() -> None:
        await worker.run()
        returned.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_it)
        await scheduler.schedule("exit")
        await scheduler.schedule("cancelled")
        await scheduler.schedule("fine")
        await wait(done.done)

        async def all_logged() -> bool:
            return len(await runs(db, scheduler.schema)) == 3

        await until(all_logged)
        assert not returned.is_set()
        await worker.shutdown()
    assert returned.is_set()
    outcomes = sorted((r["type"], r["outcome"]) for r in await runs(db, scheduler.schema))
    assert outcomes == [("cancelled", "failed"), ("exit", "failed"), ("fine", "succeeded")]


async def test_cancelling_run_is_still_a_hard_stop(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    """The worker's own cancellation is not mistaken for a handler's CancelledError."""
    started = Counter(1)

    @scheduler.job("hang")
    async def hang(job: Job) -> None:
        started.hit(job.id)
        await anyio.sleep_forever()

    worker = scheduler.worker(poll_interval=60)
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        job_id = await scheduler.schedule("hang")
        await wait(started.done)
        tg.cancel_scope.cancel()
    [run] = await runs(db, scheduler.schema, job_id)
    assert run["outcome"] == "interrupted"
    row = await db.fetchrow(f'SELECT worker_id FROM "{scheduler.schema}".jobs WHERE id = $1', job_id)
    assert row is not None
    assert row["worker_id"] is None  # released for another worker, not failed


async def test_run_raises_the_error_itself_not_a_group(dsn: str, schema_name: str) -> None:
    """A worker on a schema that was never migrated: run() raises SchemaNotMigratedError."""
    s = Scheduler(dsn, schema=schema_name)

    @s.job("t")
    async def t(job: Job) -> None: ...

    try:
        with pytest.raises(SchemaNotMigratedError, match="pgqueue migrate"):
            await s.worker().run()
    finally:
        await s.close()


@pytest.mark.parametrize("failing", ["registration", "stages"])
async def test_a_worker_whose_start_fails_gives_back_the_connections_it_opened(
    dsn: str, schema_name: str, failing: str
) -> None:
    """The claim's and the flush's connections open while the worker registers; when the
    start fails (an unmigrated schema, or a periodic declaration of an unknown type found
    while the stages are built), they go back to the pool."""
    s = Scheduler(dsn, schema=schema_name)
    s.register("t", lambda job: None)
    expected: type[Exception] = SchemaNotMigratedError
    if failing == "stages":
        await s.migrate()
        s.add_periodic("nightly", "0 3 * * *", job="missing_type")
        expected = ConfigError
    try:
        pool = (await pg_store(s)).pool
        # Three idle connections: the held ones are taken at once, while the schema check
        # still waits for its answer.
        conns = [await pool.acquire() for _ in range(3)]
        for conn in conns:
            await pool.release(conn)
        with pytest.raises(expected):
            await s.worker().run()
        assert pool.get_size() >= 3
        assert pool.get_idle_size() == pool.get_size()
    finally:
        with anyio.fail_after(10):  # a pool closes only once its connections are back
            await s.close()


async def test_a_worker_opens_its_held_connections_while_it_registers(
    scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    store = await pg_store(scheduler)
    register, open_held = type(store).worker_register, HeldConnection.open

    async def recorded_register(*args: Any, **kwargs: Any) -> Any:
        result = await register(*args, **kwargs)
        events.append("registered")
        return result

    async def recorded_open(self: HeldConnection) -> None:
        events.append("open")
        await open_held(self)

    monkeypatch.setattr(type(store), "worker_register", recorded_register)
    monkeypatch.setattr(HeldConnection, "open", recorded_open)
    scheduler.register("t", lambda job: None)
    async with running(scheduler.worker()):
        pass
    assert events[:3] == ["open", "open", "registered"]


@pytest.mark.parametrize(
    "params",
    [
        float("nan"),
        {"x": float("nan")},
        [1.0, float("inf")],
        {"deep": [{"v": float("-inf")}]},
    ],
)
async def test_non_finite_params_are_refused_and_nothing_is_written(
    scheduler: Scheduler, db: asyncpg.Connection, params: object
) -> None:
    @scheduler.job("t")
    async def t(job: Job) -> None: ...

    with pytest.raises(ParamsEncodeError, match="NaN or Infinity"):
        await scheduler.schedule("t", params)
    with pytest.raises(ParamsEncodeError, match=r"params\[1\]"):
        await scheduler.schedule_many("t", [{"ok": None}, params])
    assert await hot_count(db, scheduler.schema) == 0


async def test_none_params_still_go_through(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    """The NaN check looks at the value only when a null was written: real nulls pass."""

    @scheduler.job("t")
    async def t(job: Job) -> None: ...

    await scheduler.schedule("t", {"a": None, "b": [None, 1.5]})
    assert (
        await db.fetchval(f'SELECT params::text FROM "{scheduler.schema}".jobs')
        == '{"a":null,"b":[null,1.5]}'
    )


async def test_a_non_finite_result_fails_the_run(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    @scheduler.job("t")
    async def t(job: Job) -> dict[str, float]:
        return {"ratio": float("nan")}

    async with running(scheduler.worker(poll_interval=60)):
        job_id = await scheduler.schedule("t")

        async def logged() -> bool:
            return len(await runs(db, scheduler.schema, job_id)) == 1

        await until(logged)
    [run] = await runs(db, scheduler.schema, job_id)
    assert run["outcome"] == "failed"
    assert "NaN or Infinity" in run["error"]
    assert run["result"] is None


async def test_public_calls_on_an_unmigrated_schema_say_migrate(dsn: str, schema_name: str) -> None:
    s = Scheduler(dsn, schema=schema_name)

    @s.job("t")
    async def t(job: Job) -> None: ...

    try:
        with pytest.raises(SchemaNotMigratedError, match="pgqueue migrate"):
            await s.schedule("t", {"a": 1})
        with pytest.raises(SchemaNotMigratedError, match="pgqueue migrate"):
            await s.schedule_many("t", [1, 2])
        with pytest.raises(SchemaNotMigratedError, match="pgqueue migrate"):
            await s.cancel(1)
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                with pytest.raises(SchemaNotMigratedError):
                    await s.schedule("t", conn=conn)
        finally:
            await conn.close()
    finally:
        await s.close()


async def test_an_application_pool_gets_no_listener_warning(dsn: str, scheduler: Scheduler) -> None:
    """LISTEN runs on a connection of the application's pool (no DSN known); giving it back
    must not leave a listener on it (asyncpg warns, and apps with -W error break)."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    app = Scheduler(pool=pool, schema=scheduler.schema)
    done = Counter(1)

    @app.job("t")
    async def t(job: Job) -> None:
        done.hit(job.id)

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            worker = app.worker(poll_interval=60)
            async with running(worker):
                await app.schedule("t")
                await wait(done.done)
            assert worker.listener_connects == 1  # LISTEN did run on a pool connection
        assert [str(w.message) for w in caught] == []
        async with pool.acquire() as conn:  # the connection came back clean
            assert await conn.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0
    finally:
        await app.close()
        await pool.close()


class _SkewedClock:
    """A worker clock that runs ``skew`` seconds ahead of the real one."""

    def __init__(self, skew: float) -> None:
        self.skew = skew

    def time(self) -> float:
        return time.time() + self.skew

    def monotonic(self) -> float:
        return time.monotonic()


@pytest.mark.parametrize("skew", [300.0, -300.0])
async def test_run_times_are_on_the_database_clock(
    scheduler: Scheduler, db: asyncpg.Connection, skew: float
) -> None:
    """A worker 5 minutes off still logs runs that start after the job was inserted and end
    before the database's now(): its times are shifted by the offset it measured."""
    done = Counter(1)

    @scheduler.job("t")
    async def t(job: Job) -> None:
        done.hit(job.id)

    worker = Worker(
        open_store=scheduler.open,
        registry=scheduler.registry,
        config=WorkerConfig(queues=("default",), poll_interval=60),
        clock=_SkewedClock(skew),
    )
    async with running(worker):
        assert abs(worker.clock_offset + skew) < 5  # measured at registration
        job_id = await scheduler.schedule("t")
        await wait(done.done)

        async def logged() -> bool:
            return len(await runs(db, scheduler.schema, job_id)) == 1

        await until(logged)
    [run] = await runs(db, scheduler.schema, job_id)
    now: dt.datetime = await db.fetchval("SELECT now()")
    slack = dt.timedelta(seconds=1)  # the offset's error is half a round trip; the skew is 300 s
    assert run["inserted_at"] - slack <= run["started_at"] <= run["finished_at"] <= now + slack


async def test_an_application_pool_worker_survives_its_listen_connection_being_killed(
    dsn: str, scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """On an application's pool the LISTEN connection is one of the pool's. When the server
    ends it (a restart, pg_terminate_backend), asyncpg takes it back from its proxy; the
    worker must resubscribe and keep running, not die of the detached connection."""
    pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=4, server_settings={"application_name": "pgqueue-test-app"}
    )
    app = Scheduler(pool=pool, schema=scheduler.schema)
    done = Counter(2)

    @app.job("t")
    async def t(job: Job) -> None:
        done.hit(job.id)

    errors: list[BaseException] = []
    try:
        worker = app.worker(poll_interval=60, on_error=errors.append)
        async with running(worker):
            first = await app.schedule("t")
            await until(lambda: len(done.calls) == 1)
            listening = worker.signals.listening.count
            await db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'pgqueue-test-app' AND pid <> pg_backend_pid()"
            )
            await fired(worker.signals.listening, listening + 1)  # resubscribed
            second = await app.schedule("t")
            await wait(done.done)
        assert done.calls == [first, second]
        assert errors  # the loss was reported, not raised
    finally:
        await app.close()
        await pool.close()
