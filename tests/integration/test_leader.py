"""The maintenance leader: one at a time per schema, handed over on stop, loss and death."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TypedDict

import anyio
import asyncpg
import pytest

from pgqueue import ConfigError, Job, Scheduler, Worker
from pgqueue.store.postgres.leader import LEADER_APP_NAME
from tests._support import ROOT_DIR, claim_records, fired, pg_store, running, until

pytestmark = pytest.mark.pg


class _Liveness(TypedDict):
    heartbeat_interval: float
    dead_after: float


FAST: _Liveness = {"heartbeat_interval": 0.05, "dead_after": 0.3}

_HOLDERS = """
    SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted
      AND (l.classid::bigint << 32) | l.objid::bigint = hashtextextended($1, 0)
"""


async def _holders(db: asyncpg.Connection, schema: str) -> list[asyncpg.Record]:
    """The sessions holding the schema's leader lock (at most one, by construction)."""
    return list(await db.fetch(_HOLDERS, f"pgqueue.leader:{schema}"))


async def _held(db: asyncpg.Connection, schema: str) -> bool:
    return bool(await _holders(db, schema))


def _leaders(*workers: Worker) -> int:
    return sum(bool(w.is_leader) for w in workers)


async def test_one_worker_leads_and_hands_over_when_it_stops(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    scheduler.register("noop", lambda job: None)
    first, second = scheduler.worker(**FAST), scheduler.worker(**FAST)
    async with anyio.create_task_group() as tg:
        await tg.start(first.run)
        await fired(first.signals.leader_elected, 1)
        await tg.start(second.run)
        # Each heartbeat interval the second worker tries for the lock, and fails.
        await fired(second.signals.heartbeat, second.signals.heartbeat.count + 4)
        assert (first.is_leader, second.is_leader) == (True, False)
        assert second.signals.leader_elected.count == 0
        holders = await _holders(db, scheduler.schema)
        assert [h["application_name"] for h in holders] == [f"{LEADER_APP_NAME}:{os.getpid()}"]

        with anyio.fail_after(30):
            await first.shutdown()
        await fired(second.signals.leader_elected, 1)
        assert second.is_leader
        assert first.signals.leader_lost.count == 0  # a stop hands over; it does not lose
        with anyio.fail_after(30):
            await second.shutdown()
    assert await _holders(db, scheduler.schema) == []


async def test_a_leader_whose_session_is_killed_steps_down_and_one_leader_remains(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    scheduler.register("noop", lambda job: None)
    first, second = scheduler.worker(**FAST), scheduler.worker(**FAST)
    async with running(first), running(second):
        await until(lambda: _leaders(first, second) == 1)
        leader = first if first.is_leader else second
        (holder,) = await _holders(db, scheduler.schema)
        assert await db.fetchval("SELECT pg_terminate_backend($1)", holder["pid"])
        await fired(leader.signals.leader_lost, 1)
        # Someone leads again, on a new session, and only one worker believes it leads.
        await until(lambda: _leaders(first, second) == 1)
        (new_holder,) = await _holders(db, scheduler.schema)
        assert new_holder["pid"] != holder["pid"]


async def test_a_worker_outside_the_election_never_reaps(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    scheduler.register("noop", lambda job: None)
    store = await pg_store(scheduler)
    dead, _ = await store.worker_register(["default"])
    await scheduler.schedule("noop")
    (held,) = await claim_records(store, ["default"], 1, dead)
    await db.execute(
        f"UPDATE \"{scheduler.schema}\".workers SET heartbeat = now() - interval '1 hour' WHERE id = $1", dead
    )
    bystander = scheduler.worker(maintenance=False, **FAST)
    async with running(bystander):
        await fired(bystander.signals.heartbeat, 6)  # several healthy beats: a leader would have reaped
        assert not bystander.is_leader
        assert (
            await db.fetchval(f'SELECT worker_id FROM "{scheduler.schema}".jobs WHERE id = $1', held["id"])
            == dead
        )
        assert await _holders(db, scheduler.schema) == []
        async with running(scheduler.worker(**FAST)) as leader:
            await fired(leader.signals.reaped, 1)
            await until(lambda: bystander.stats.finished + leader.stats.finished == 1)


async def test_without_listen_every_worker_runs_the_duties_and_takes_no_lock(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """Transaction-mode poolers cannot hold session locks: each worker acts, which is safe."""
    scheduler.register("noop", lambda job: None)
    first, second = scheduler.worker(listen=False, **FAST), scheduler.worker(listen=False, **FAST)
    async with running(first), running(second):
        await until(lambda: _leaders(first, second) == 2)
        assert await _holders(db, scheduler.schema) == []


async def test_on_an_application_pool_the_lock_connection_goes_back_unlocked(
    dsn: str, schema_name: str, db: asyncpg.Connection
) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=6)
    try:
        scheduler = Scheduler(pool=pool, schema=schema_name)
        await scheduler.migrate()
        scheduler.register("noop", lambda job: None)
        worker = scheduler.worker(**FAST)
        async with running(worker):
            await fired(worker.signals.leader_elected, 1)
            (holder,) = await _holders(db, schema_name)
            assert not holder["application_name"].startswith(LEADER_APP_NAME)  # one of the pool's own
        assert await _holders(db, schema_name) == []
        # The pool's connections came back holding no advisory lock.
        conns = [await pool.acquire() for _ in range(pool.get_size())]
        try:
            for conn in conns:
                held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                assert await conn.fetchval(held) == 0
        finally:
            for conn in conns:
                await pool.release(conn)
        await scheduler.close()
    finally:
        await db.execute(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')
        await pool.close()


def _worker_env(dsn: str, schema: str) -> dict[str, str]:
    return {**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": schema, "PYTHONPATH": ROOT_DIR}


async def test_a_sigkilled_leader_is_succeeded_by_a_worker_that_reaps_it(
    dsn: str, scheduler: Scheduler, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """The leader process dies without any clean-up: the server ends its session, which frees
    the lock; the next worker to try leads, reaps the dead leader and reruns its job."""
    schema = scheduler.schema
    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen(  # noqa: ASYNC220 - starting the worker process under test
        [sys.executable, "-m", "pgqueue", "worker", "tests.cli_app:scheduler",
         "--heartbeat-interval", "0.1", "--dead-after", "0.5"],
        env=_worker_env(dsn, schema), cwd=ROOT_DIR, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        await until(lambda: _held(db, schema))
        (holder,) = await _holders(db, schema)
        assert holder["application_name"] == f"{LEADER_APP_NAME}:{proc.pid}"
        done = anyio.Event()

        @scheduler.job("hang_first_run")
        async def hang_first_run(job: Job) -> str:
            if job.attempt == 1:
                await anyio.sleep_forever()
            done.set()
            return "second run"

        job_id = await scheduler.schedule("hang_first_run")
        sql = f'SELECT count(*) FROM "{schema}".jobs WHERE worker_id IS NOT NULL'
        await until(lambda: _count_is(db, sql, 1))
        successor = scheduler.worker(heartbeat_interval=0.1, dead_after=0.5)
        async with running(successor):
            await fired(successor.signals.heartbeat, 2)
            assert not successor.is_leader
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            await fired(successor.signals.leader_elected, 1)
            await fired(successor.signals.reaped, 1)
            with anyio.fail_after(30):
                await done.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    await until(lambda: _count_is(db, f'SELECT count(*) FROM "{schema}".job_runs WHERE job_id = {job_id}', 2))
    outcomes = await db.fetch(
        f'SELECT attempt, outcome FROM "{schema}".job_runs WHERE job_id = $1 ORDER BY attempt', job_id
    )
    assert [tuple(r) for r in outcomes] == [(1, "crashed"), (2, "succeeded")]


async def _count_is(db: asyncpg.Connection, sql: str, want: int) -> bool:
    return bool(await db.fetchval(sql) == want)


async def test_an_in_memory_worker_leads_its_store() -> None:
    scheduler = Scheduler.in_memory()
    scheduler.register("noop", lambda job: None)
    first, second = scheduler.worker(**FAST), scheduler.worker(**FAST)
    async with running(first):
        await fired(first.signals.leader_elected, 1)
        async with running(second):
            await fired(second.signals.heartbeat, 3)
            assert (first.is_leader, second.is_leader) == (True, False)
        assert first.is_leader


async def test_the_leader_runs_the_periodic_rounds(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    ticks: list[float] = []
    two = anyio.Event()

    @scheduler.periodic(every=dt.timedelta(seconds=1), name="beat")
    async def beat(job: Job) -> None:
        ticks.append(job.run_at.timestamp())
        if len(ticks) == 2:
            two.set()

    worker = scheduler.worker(**FAST)
    async with running(worker):
        with anyio.fail_after(30):
            await two.wait()
        assert worker.is_leader
    assert ticks[0] != ticks[1]
    assert all(t == int(t) for t in ticks)  # each job's run_at is its whole-second tick
    rows = await db.fetch(f'SELECT name, last_tick FROM "{scheduler.schema}".periodic')
    assert [r["name"] for r in rows] == ["beat"]


async def test_a_periodic_declaration_of_an_unknown_type_stops_the_worker_at_start(
    scheduler: Scheduler,
) -> None:
    scheduler.register("noop", lambda job: None)
    scheduler.add_periodic("nightly", "0 3 * * *", job="missing_type")
    with pytest.raises(ConfigError, match="missing_type"):
        await scheduler.worker(**FAST).run()


@pytest.mark.parametrize("size", [2, 4, 5])
async def test_on_a_small_application_pool_every_worker_runs_the_duties_without_a_lock(
    dsn: str, schema_name: str, db: asyncpg.Connection, size: int
) -> None:
    """LISTEN takes one connection (and from four on, claims and flushes one each): a lock
    held for good would take what heartbeats, reaping and schedule() need."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=size)
    try:
        scheduler = Scheduler(pool=pool, schema=schema_name)
        await scheduler.migrate()
        done = anyio.Event()

        @scheduler.job("noop")
        async def noop(job: Job) -> None:
            done.set()

        worker = scheduler.worker(**FAST)
        async with running(worker):
            await scheduler.schedule("noop")
            with anyio.fail_after(30):
                await done.wait()
            assert worker.is_leader
            assert await _holders(db, schema_name) == []
        await scheduler.close()
    finally:
        await db.execute(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')
        await pool.close()
