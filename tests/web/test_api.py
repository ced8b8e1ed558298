"""The JSON API on a real scheduler: every route's success, in the CLI's JSON shapes.

Jobs run to their end with a real worker, so the API reads what the database holds.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx2
import pytest
from pydantic import BaseModel

from pgqueue import Job, JobState, Scheduler, _bulk
from pgqueue._jsonable import job_json
from pgqueue.web import create_app
from tests._support import Counter, running, wait
from tests.contract._helpers import Hold, reach, run_until_ended
from tests.web.conftest import JSON, client_for

pytestmark = pytest.mark.pg


class Order(BaseModel):
    order_id: int


def register(s: Scheduler) -> Hold:
    """ok succeeds, boom fails for good, order takes typed params, hang runs until released."""
    hold = Hold()

    @s.job("ok")
    async def ok(job: Job) -> dict[str, object]:
        return {"echo": job.params}

    @s.job("boom", queue="risky")
    async def boom(job: Job) -> None:
        raise RuntimeError("no")

    @s.job("order", queue="orders", params=Order)
    async def order(job: Job) -> None:
        return None

    s.register("hang", hold.run, queue="slow", suspendable=True)
    return hold


@pytest.fixture
async def typed(scheduler: Scheduler) -> Scheduler:
    register(scheduler)
    return scheduler


async def test_schedule_then_get_a_job_in_the_cli_shape(typed: Scheduler, client: httpx2.AsyncClient) -> None:
    r = await client.post("/api/jobs", json={"type": "ok", "params": {"a": 1}, "priority": 3})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    assert r.json() == {"id": job_id, "inserted": True}
    await run_until_ended(typed, job_id)
    got = await client.get(f"/api/jobs/{job_id}")
    assert got.status_code == 200
    body = got.json()
    assert got.headers["content-type"] == "application/json"
    assert body["state"] == "succeeded"
    assert body["params"] == {"a": 1}
    assert body["priority"] == 3
    assert body["result"] == {"echo": {"a": 1}}
    assert [run["outcome"] for run in body["runs"]] == ["succeeded"]
    finished = dt.datetime.fromisoformat(body["finished_at"])
    assert finished.tzinfo is not None  # ISO 8601 with its offset
    record = await typed.get_job(job_id)
    expected = job_json(record)
    assert set(body) == set(expected)


async def test_schedule_options_run_at_delay_queue_and_unique_key(
    typed: Scheduler, client: httpx2.AsyncClient
) -> None:
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    r = await client.post("/api/jobs", json={"type": "ok", "run_at": later, "queue": "elsewhere"})
    assert r.status_code == 201
    record = await typed.get_job(r.json()["id"])
    assert (record.state, record.queue) == (JobState.SCHEDULED, "elsewhere")
    r = await client.post("/api/jobs", json={"type": "ok", "delay_s": 600})
    assert (await typed.get_job(r.json()["id"])).state is JobState.SCHEDULED
    first = await client.post("/api/jobs", json={"type": "ok", "unique_key": "k1"})
    again = await client.post("/api/jobs", json={"type": "ok", "unique_key": "k1"})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == {"id": first.json()["id"], "inserted": False}


async def test_typed_params_are_validated_by_the_model(typed: Scheduler, client: httpx2.AsyncClient) -> None:
    ok = await client.post("/api/jobs", json={"type": "order", "params": {"order_id": 7}})
    assert ok.status_code == 201
    assert (await typed.get_job(ok.json()["id"])).queue == "orders"
    bad = await client.post("/api/jobs", json={"type": "order", "params": {"order_id": "seven"}})
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_params"
    assert "order_id" in bad.json()["message"]


async def test_list_jobs_filters_and_pages_with_the_cursor(
    typed: Scheduler, client: httpx2.AsyncClient
) -> None:
    ids = [int(await typed.schedule("ok", i, queue="idle")) for i in range(5)]
    other = int(await typed.schedule("ok", "x", queue="other"))
    r = await client.get("/api/jobs", params={"queue": "idle", "limit": 2})
    assert r.status_code == 200
    seen: list[int] = []
    page = r.json()
    while True:
        seen += [item["id"] for item in page["items"]]
        assert all(item["queue"] == "idle" for item in page["items"])
        if page["cursor"] is None:
            break
        page = (
            await client.get("/api/jobs", params={"queue": "idle", "limit": 2, "cursor": page["cursor"]})
        ).json()
    assert seen == sorted(ids, reverse=True)
    everything = (await client.get("/api/jobs")).json()
    assert [i["id"] for i in everything["items"]] == [other, *sorted(ids, reverse=True)]
    assert everything["cursor"] is None
    by_state = (await client.get("/api/jobs", params={"state": "pending", "type": "ok"})).json()
    assert len(by_state["items"]) == 6


async def test_actions_walk_a_job_through_its_states(typed: Scheduler, client: httpx2.AsyncClient) -> None:
    job_id = int(await typed.schedule("ok", queue="idle"))
    r = await client.post(f"/api/jobs/{job_id}/suspend", headers=JSON)
    assert r.status_code == 200
    assert r.json() == {"id": job_id, "action": "suspend", "outcome": "done"}
    assert (await typed.get_job(job_id)).state is JobState.SUSPENDED
    assert (await client.post(f"/api/jobs/{job_id}/resume", headers=JSON)).status_code == 200
    assert (await typed.get_job(job_id)).state is JobState.PENDING
    r = await client.post(f"/api/jobs/{job_id}/cancel", headers=JSON)
    assert r.json() == {"id": job_id, "action": "cancel", "outcome": "cancelled"}
    r = await client.post(f"/api/jobs/{job_id}/retry", json={})
    assert r.json()["outcome"] == "done"
    assert (await typed.get_job(job_id)).state is JobState.PENDING
    r = await client.delete(f"/api/jobs/{job_id}")
    assert r.json() == {"id": job_id, "action": "delete", "outcome": "done"}
    after = await client.get(f"/api/jobs/{job_id}")  # known by its logged runs: the cancel is the last
    assert (after.status_code, after.json()["state"]) == (200, "cancelled")
    assert (await client.delete(f"/api/jobs/{job_id}")).status_code == 409  # no live job to delete


async def test_cancel_of_a_running_job_is_cancelling(
    scheduler: Scheduler, client: httpx2.AsyncClient
) -> None:
    hold = register(scheduler)
    async with running(scheduler.worker(poll_interval=3600)):
        job_id = int(await scheduler.schedule("hang"))
        await wait(hold.started.done)
        r = await client.post(f"/api/jobs/{job_id}/cancel", headers=JSON)
        assert r.json() == {"id": job_id, "action": "cancel", "outcome": "cancelling"}
        await reach(scheduler, job_id, JobState.CANCELLED)


async def test_bulk_retry_and_bulk_cancel(typed: Scheduler, client: httpx2.AsyncClient) -> None:
    failed = [int(await typed.schedule("boom", i)) for i in range(2)]
    await run_until_ended(typed, *failed)
    r = await client.post("/api/jobs/retry", json={"type": "boom"})
    assert r.status_code == 200
    assert r.json() == {"ids": failed, "count": 2}
    r = await client.post("/api/jobs/cancel", json={"queue": "risky"})
    assert r.json() == {"cancelled": 2, "cancelling": 0}
    for job_id in failed:
        assert (await typed.get_job(job_id)).state is JobState.CANCELLED


async def test_bulk_retry_lists_by_pages_and_retries_by_chunks(
    typed: Scheduler, client: httpx2.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each chunk is one statement naming its ids: a large backlog is never one long transaction."""
    failed = [int(await typed.schedule("boom", i)) for i in range(3)]
    await run_until_ended(typed, *failed)
    monkeypatch.setattr(_bulk, "MAX_PAGE", 2)
    monkeypatch.setattr(_bulk, "RETRY_CHUNK", 2)
    chunks: list[list[int] | None] = []
    retry_many = typed.retry_many

    async def spy(**kwargs: Any) -> list[int]:
        ids = kwargs.get("ids")
        chunks.append(None if ids is None else list(ids))
        return await retry_many(**kwargs)

    monkeypatch.setattr(typed, "retry_many", spy)
    r = await client.post("/api/jobs/retry", json={"queue": "risky"})
    assert r.json() == {"ids": failed, "count": 3}
    assert chunks == [failed[:2], failed[2:]]


async def test_stats_queues_activity_types_and_workers(typed: Scheduler, client: httpx2.AsyncClient) -> None:
    done = [int(await typed.schedule("ok")), int(await typed.schedule("boom"))]
    await run_until_ended(typed, *done)
    await typed.schedule("ok", queue="idle")
    stats = (await client.get("/api/stats")).json()
    assert stats["by_queue"]["idle"] == {
        "pending": 1,
        "scheduled": 0,
        "running": 0,
        "suspended": 0,
        "waiting": 0,
    }
    assert stats["by_type"]["ok"]["pending"] == 1
    queues = (await client.get("/api/queues")).json()
    by_name = {q["name"]: q for q in queues["items"]}
    assert sorted(by_name) == ["default", "idle", "risky"]
    assert by_name["default"]["finished"] == {"succeeded": 1, "failed": 0, "retried": 0, "cancelled": 0}
    assert by_name["risky"]["finished"]["failed"] == 1
    assert by_name["idle"]["live"]["pending"] == 1
    activity = (await client.get("/api/activity", params={"window_s": 600, "bucket_s": 60})).json()
    assert len(activity["buckets"]) == 10
    assert activity["totals"] == {"succeeded": 1, "failed": 1, "retried": 0, "cancelled": 0}
    assert sum(b["succeeded"] for b in activity["buckets"]) == 1
    assert activity["by_queue"]["risky"]["failed"] == 1
    types = (await client.get("/api/types")).json()
    assert [t["name"] for t in types] == ["boom", "hang", "ok", "order"]
    order = next(t for t in types if t["name"] == "order")
    assert order["params_schema"]["properties"]["order_id"]["type"] == "integer"
    assert (await client.get("/api/workers")).json() == []
    calls = Counter(1)

    @typed.job("note", queue="noted")
    async def note(job: Job) -> None:
        calls.hit(job.id)

    async with running(typed.worker(["noted"], poll_interval=3600)) as w:
        await typed.schedule("note")
        await wait(calls.done)
        workers = (await client.get("/api/workers")).json()
        assert [x["id"] for x in workers] == [w.id]
        assert workers[0]["queues"] == ["noted"]


async def test_the_api_works_on_the_memory_backend() -> None:
    """No database at all: the app needs only the Scheduler's public API."""
    s = Scheduler.in_memory()
    register(s)
    try:
        async with client_for(create_app(s)) as c:
            r = await c.post("/api/jobs", json={"type": "ok"})
            assert r.status_code == 201
            job = (await c.get(f"/api/jobs/{r.json()['id']}")).json()
            assert job["state"] == "pending"
            assert (await c.get("/api/activity")).json()["totals"]["succeeded"] == 0
    finally:
        await s.close()
