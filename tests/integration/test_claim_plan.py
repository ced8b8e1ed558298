"""The claim reads the claim index, never the whole table, at 100k rows, and updates by ctid."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from pgqueue import Scheduler
from tests._support import pg_store

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
