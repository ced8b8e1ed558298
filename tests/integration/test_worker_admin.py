"""Worker admin on PostgreSQL: the lock against a claim in flight, the rows a forced removal
writes, and the ``pgqueue workers`` commands."""

from __future__ import annotations

import asyncio
import json

import anyio
import asyncpg
import pytest

from pgqueue import Scheduler, WorkerHasActiveJobs
from tests._support import lock_wait, pg_store
from tests.integration._cli import run_main

pytestmark = pytest.mark.pg


async def _noop(job: object) -> None:
    return None


async def test_remove_worker_waits_for_a_claim_in_flight_then_counts_its_jobs(
    scheduler: Scheduler, dsn: str, schema_name: str
) -> None:
    """A claim holds its worker's row FOR KEY SHARE until it commits: remove_worker() locks the
    row first, so it waits for the claim and then sees the claimed job (and refuses), instead
    of dropping a row whose job would stay owned by nobody."""
    s = scheduler
    s.register("t", _noop)
    store = await pg_store(s)
    wid, _ = await store.worker_register(["default"], 4)
    job_id = await s.schedule("t")
    claimer, watcher = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    refused: list[WorkerHasActiveJobs] = []
    try:
        tx = claimer.transaction()
        await tx.start()
        assert [r["id"] for r in await claimer.fetch(store.q.job_claim_many, ["default"], 1, wid)] == [job_id]

        async def remove() -> None:
            try:
                await s.remove_worker(wid)
            except WorkerHasActiveJobs as exc:
                refused.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(remove)
            await lock_wait(watcher)  # remove_worker() waits on the worker's row
            await tx.commit()
    finally:
        await claimer.close()
        await watcher.close()
    assert [(e.worker_id, e.held) for e in refused] == [(wid, 1)]
    assert [w.jobs_held for w in await s.list_workers()] == [1]
    assert await s.remove_worker(wid, force=True) == 1
    assert await s.list_workers() == []


async def test_a_forced_removal_writes_what_reaping_writes(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    s = scheduler
    s.register("t", _noop)
    store = await pg_store(s)
    wid, _ = await store.worker_register(["default"], 2)
    job_id = await s.schedule("t")
    assert len(await store.job_claim_many(["default"], 1, wid)) == 1
    assert await s.remove_worker(wid, force=True) == 1
    row = await db.fetchrow(
        f'SELECT worker_id, attempt, delayed, last_error FROM "{s.schema}".jobs WHERE id = $1', job_id
    )
    assert row is not None
    assert (row["worker_id"], row["attempt"], row["delayed"]) == (None, 1, True)  # the attempt counted
    assert f"worker {wid} (" in row["last_error"]
    [run] = await db.fetch(
        f'SELECT worker_id, attempt, outcome, retry_at IS NOT NULL AS again FROM "{s.schema}".job_runs'
    )
    assert (run["worker_id"], run["attempt"], run["outcome"], run["again"]) == (wid, 1, "crashed", True)
    assert await s.queue_depth() == 1  # claimable again at once


def test_workers_commands(
    main_env: None, dsn: str, schema_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def register_and_claim() -> tuple[int, int]:
        async with Scheduler(dsn, schema=schema_name) as s:
            s.register("t", _noop)
            store = await s.open()
            busy, _ = await store.worker_register(["default"], 5)
            idle, _ = await store.worker_register(["other"], 3)
            await s.schedule("t")
            assert len(await store.job_claim_many(["default"], 1, busy)) == 1
            return busy, idle

    busy, idle = asyncio.run(register_and_claim())
    code, out, _ = run_main(capsys, "workers")
    assert code == 0
    for header in ("kind", "concurrency", "jobs held", "heartbeat"):
        assert header in out
    assert run_main(capsys, "workers", "list")[1] == out
    listed = json.loads(run_main(capsys, "workers", "--json")[1])
    assert json.loads(run_main(capsys, "workers", "list", "--json")[1]) == listed
    assert [(w["id"], w["kind"], w["concurrency"], w["jobs_held"]) for w in listed] == [
        (busy, "worker", 5, 1),
        (idle, "worker", 3, 0),
    ]

    code, out, err = run_main(capsys, "workers", "remove", str(busy))
    assert (code, out, err.strip()) == (
        1,
        "",
        f"error: worker {busy} holds 1 running job(s); --force releases them (as reaping does)",
    )
    code, out, err = run_main(capsys, "workers", "remove", "999999")
    assert (code, out, err.strip()) == (1, "", "error: no registered worker has id 999999")
    code, _, err = run_main(capsys, "workers", "remove", "abc")
    assert code == 2
    assert "Traceback" not in err
    assert len(json.loads(run_main(capsys, "workers", "--json")[1])) == 2  # nothing changed

    assert run_main(capsys, "workers", "remove", str(busy), "--force") == (
        0,
        f"worker {busy} removed; 1 job(s) released\n",
        "",
    )
    code, out, _ = run_main(capsys, "workers", "remove", str(idle), "--json")
    assert (code, json.loads(out)) == (0, {"id": idle, "removed": True, "jobs_released": 0})
    assert json.loads(run_main(capsys, "workers", "--json")[1]) == []
