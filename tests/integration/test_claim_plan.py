"""The claim reads the claim index, never the whole table, at 100k rows, updates by ctid, and races safely."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest

from pgqueue import Scheduler
from tests._support import pg_store, until

pytestmark = pytest.mark.pg


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan's nodes, depth first (EXPLAIN's JSON: any value a node carries)."""
    out = [plan]
    for child in plan.get("Plans", []):
        out += _nodes(child)
    return out


async def test_claim_uses_index_scans_on_a_large_table(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    schema = scheduler.schema
    await db.execute(
        f"""INSERT INTO "{schema}".jobs (queue, type, params, run_at, delayed)
            SELECT CASE WHEN g % 10 = 0 THEN 'other' ELSE 'default' END, 'noop', '{{}}',
                   now() + CASE WHEN g % 7 = 0 THEN interval '1 hour' ELSE interval '0' END,
                   g % 7 = 0
            FROM generate_series(1, 100000) AS g"""
    )
    await db.execute(f'ANALYZE "{schema}".jobs')
    store = await pg_store(scheduler)
    worker_id, _server_time = await store.worker_register(["default"])
    sql = store.q.job_claim_many
    tx = db.transaction()
    await tx.start()
    try:
        plan_json = await db.fetchval("EXPLAIN (FORMAT JSON, ANALYZE) " + sql, ["default"], 500, worker_id)
    finally:
        await tx.rollback()
    nodes = _nodes(json.loads(plan_json)[0]["Plan"])
    scans = {(n["Node Type"], n.get("Index Name")) for n in nodes if "Scan" in n["Node Type"]}
    assert ("Seq Scan", None) not in scans, scans
    names = {name for _, name in scans}
    assert {"jobs_claim_idx", "jobs_due_idx"} <= names
    assert ("Tid Scan", None) in scans, scans  # the update finds the locked rows by ctid
    claimed = next(n for n in nodes if n["Node Type"] == "ModifyTable")["Actual Rows"]
    assert claimed == 500


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE {s}.jobs SET priority = priority WHERE id = $1",  # still claimable: a new version
        "UPDATE {s}.jobs SET worker_id = 0 WHERE id = $1",  # suspended meanwhile
        "DELETE FROM {s}.jobs WHERE id = $1",  # cancelled meanwhile
    ],
)
async def test_a_job_changed_while_a_claim_waits_is_never_claimed_twice_nor_left_locked(
    scheduler: Scheduler, db: asyncpg.Connection, dsn: str, change: str
) -> None:
    """The claim's snapshot predates a concurrent change to one of its jobs.

    The claim waits on its worker row (held FOR UPDATE by another session), which commits
    a change to one job and then lets the claim go on. Whatever the change, that job is
    not claimed by this statement (its new version is not in the statement's snapshot, and
    the update finds rows by ctid), the other jobs are, and nothing stays locked: a job
    still claimable is claimed by the next claim.
    """
    schema = scheduler.schema
    s = f'"{schema}"'
    store = await pg_store(scheduler)
    worker_id, _ = await store.worker_register(["race"])
    ids = [
        await db.fetchval(
            f"INSERT INTO {s}.jobs (queue, type, params) VALUES ('race', 't', '{{}}') RETURNING id"
        )
        for _ in range(3)
    ]
    holder, claimer = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute(f"SELECT 1 FROM {s}.workers WHERE id = $1 FOR UPDATE", worker_id)
        claim = asyncio.ensure_future(claimer.fetch(store.q.job_claim_many, ["race"], 10, worker_id))
        pid = claimer.get_server_pid()

        async def claim_waits() -> bool:  # it has taken its snapshot and waits on the worker row
            waiting = await db.fetchval("SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid)
            return bool(waiting == "Lock")

        await until(claim_waits)
        await holder.execute(change.format(s=s), ids[0])
        await tx.commit()
        first = sorted(r["id"] for r in await claim)
        assert first == ids[1:]
        assert await db.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'tuple'") == 0
        again = [r["id"] for r in await claimer.fetch(store.q.job_claim_many, ["race"], 10, worker_id)]
        row = await db.fetchrow(f"SELECT worker_id, attempt FROM {s}.jobs WHERE id = $1", ids[0])
        if change.startswith("UPDATE") and "priority" in change:
            assert again == [ids[0]]  # still claimable: the next claim takes it, once
            assert row is not None
            assert (row["worker_id"], row["attempt"]) == (worker_id, 1)
        else:
            assert again == []  # suspended or gone: no claim takes it
        claimed_twice = await db.fetchval(f"SELECT count(*) FROM {s}.jobs WHERE attempt > 1")
        assert claimed_twice == 0
    finally:
        await holder.close()
        await claimer.close()
