"""The API's workers: the list's new fields, and ``POST /api/workers/{id}/remove``."""

from __future__ import annotations

import httpx2
import pytest

from pgqueue import Scheduler
from tests._support import pg_store
from tests.web.conftest import JSON, ClientFactory

pytestmark = pytest.mark.pg


async def _noop(job: object) -> None:
    return None


async def _holding_worker(s: Scheduler) -> int:
    """A registered worker (concurrency 4) that has claimed one job."""
    s.register("t", _noop)
    store = await pg_store(s)
    wid, _ = await store.worker_register(["default"], 4)
    await s.schedule("t")
    assert len(await store.job_claim_many(["default"], 1, wid)) == 1
    return wid


async def test_workers_list_and_remove(scheduler: Scheduler, client: httpx2.AsyncClient) -> None:
    wid = await _holding_worker(scheduler)
    [listed] = (await client.get("/api/workers")).json()
    assert {k: listed[k] for k in ("id", "kind", "concurrency", "jobs_held", "queues")} == {
        "id": wid,
        "kind": "worker",
        "concurrency": 4,
        "jobs_held": 1,
        "queues": ["default"],
    }

    refused = await client.post(f"/api/workers/{wid}/remove", json={})
    assert (refused.status_code, refused.json()) == (
        409,
        {
            "error": "has_active_jobs",
            "message": f'worker {wid} holds 1 running job(s); {{"force": true}} releases them',
        },
    )
    refused = await client.post(f"/api/workers/{wid}/remove", json={"force": False})
    assert refused.status_code == 409
    assert (await client.post(f"/api/workers/{wid}/remove", headers=JSON)).status_code == 409  # no body
    assert [w["jobs_held"] for w in (await client.get("/api/workers")).json()] == [1]

    for body, status in (
        ({"force": "yes"}, 400),
        ({"force": 1}, 400),
        ({"forced": True}, 400),
        ([True], 400),
    ):
        r = await client.post(f"/api/workers/{wid}/remove", json=body)
        assert (r.status_code, r.json()["error"]) == (status, "bad_request"), body
    for bad_id in ("abc", "0", str(2**63)):
        r = await client.post(f"/api/workers/{bad_id}/remove", json={})
        assert (r.status_code, r.json()["error"]) == (400, "bad_request")
    missing = await client.post("/api/workers/999999/remove", json={})
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "not_found", "message": "no registered worker has id 999999"},
    )
    assert len((await client.get("/api/workers")).json()) == 1  # nothing changed

    done = await client.post(f"/api/workers/{wid}/remove", json={"force": True})
    assert (done.status_code, done.json()) == (200, {"id": wid, "removed": True, "jobs_released": 1})
    assert (await client.get("/api/workers")).json() == []
    assert await scheduler.queue_depth() == 1


async def test_remove_is_a_guarded_write(scheduler: Scheduler, make_client: ClientFactory) -> None:
    wid = await _holding_worker(scheduler)
    async with make_client(read_only=True) as c:
        r = await c.post(f"/api/workers/{wid}/remove", json={"force": True})
        assert (r.status_code, r.json()["error"]) == (403, "read_only")
    async with make_client(token="s3cret-token") as c:
        r = await c.post(f"/api/workers/{wid}/remove", json={"force": True})
        assert r.status_code == 401
        r = await c.post(
            f"/api/workers/{wid}/remove", json={"force": True}, headers={"Origin": "https://evil.example"}
        )
        assert r.status_code in (401, 403)
    async with make_client() as c:
        r = await c.post(
            f"/api/workers/{wid}/remove",
            content=b'{"force": true}',
            headers={"Content-Type": "text/plain"},
        )
        assert r.status_code == 415  # what a cross-site form could send
    assert [w.jobs_held for w in await scheduler.list_workers()] == [1]
