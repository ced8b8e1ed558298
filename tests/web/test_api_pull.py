"""The pull API over HTTP on a real PostgreSQL schema: dequeue (long-poll), leases, refusals.

Each route is driven through the app as a client would, and its effect is read back
through the Scheduler and the run log: a woken long-poll, a 204 at the timeout, fencing
(a stale token changes nothing), a client that goes away mid-wait, and the guard's
refusals (token, read-only), plus 400s for malformed tokens and bodies.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import anyio
import asyncpg
import httpx2
import orjson
import pytest
from starlette.types import ASGIApp, Message

from pgqueue import JobState, Scheduler
from pgqueue.pull import consumer as consumer_module
from pgqueue.store.memory import MemoryStore
from pgqueue.web import create_app
from tests._support import runs, until
from tests.web.conftest import JSON, ClientFactory, client_for
from tests.web.test_api_errors import assert_error

pytestmark = pytest.mark.pg

WAIT = 10.0  # seconds a test waits for what must happen well before
TOKEN = "s3cret-token"


@pytest.fixture(autouse=True)
def _declared(scheduler: Scheduler) -> None:
    scheduler.declare("t", queue="q")


@pytest.fixture
async def other(dsn: str, scheduler: Scheduler) -> AsyncIterator[Scheduler]:
    """A second scheduler on the same schema: another process scheduling, or another app."""
    s = Scheduler(dsn, schema=scheduler.schema)
    s.declare("t", queue="q")
    try:
        yield s
    finally:
        await s.close()


async def _dequeue(c: httpx2.AsyncClient, **body: object) -> httpx2.Response:
    return await c.post("/api/dequeue", json={"timeout": 0, **body})


async def _lease(c: httpx2.AsyncClient, **body: object) -> dict[str, object]:
    r = await _dequeue(c, **body)
    assert r.status_code == 200, r.text
    leases: list[dict[str, object]] = r.json()["leases"]
    assert len(leases) == 1
    return leases[0]


async def _job_row(db: asyncpg.Connection, schema: str, job_id: int) -> asyncpg.Record | None:
    return await db.fetchrow(
        f'SELECT worker_id, attempt, errors, lease_until, delayed FROM "{schema}".jobs WHERE id = $1', job_id
    )


# -- dequeue -------------------------------------------------------------------------------


async def test_dequeue_leases_a_job_and_finish_ends_it_with_its_result(
    client: httpx2.AsyncClient, scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    job_id = await scheduler.schedule("t", {"x": [1, "é"]}, priority=3)
    lease = await _lease(client, types=["t"], queues=["q"], lease=45)
    assert set(lease) == {
        "token",
        "id",
        "type",
        "queue",
        "params",
        "attempt",
        "priority",
        "expires_at",
        "lease_s",
        "tenant",
    }
    assert lease["tenant"] is None
    assert (lease["id"], lease["type"], lease["queue"], lease["params"]) == (
        job_id,
        "t",
        "q",
        {"x": [1, "é"]},
    )
    assert (lease["attempt"], lease["priority"], lease["lease_s"]) == (1, 3, 45.0)
    assert lease["token"] == f"{job_id}-1-{scheduler._consumer._owner}"  # type: ignore[union-attr]
    expires = dt.datetime.fromisoformat(str(lease["expires_at"]))
    assert expires.utcoffset() == dt.timedelta(0)
    assert (await scheduler.get_job(job_id)).state is JobState.RUNNING

    r = await client.post(f"/api/leases/{lease['token']}/finish", json={"result": {"ok": [1, 2]}})
    assert r.status_code == 200, r.text
    assert r.json() == {"token": lease["token"], "id": job_id, "outcome": "succeeded"}
    record = await scheduler.get_job(job_id)
    assert (record.state, record.result) == (JobState.SUCCEEDED, {"ok": [1, 2]})
    assert [row["outcome"] for row in await runs(db, scheduler.schema)] == ["succeeded"]


async def test_a_long_poll_is_woken_by_a_schedule_from_another_scheduler(
    client: httpx2.AsyncClient, scheduler: Scheduler, other: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the notification the dequeue would look again only after an hour: the test's
    # deadline proves that the schedule woke the waiting request.
    monkeypatch.setattr(consumer_module, "RECHECK_S", 3600.0)
    answers: list[httpx2.Response] = []

    async def poll() -> None:
        answers.append(await client.post("/api/dequeue", json={"queues": ["q"], "timeout": 60}))

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(poll)
            await until(lambda: bool(scheduler._consumer and scheduler._consumer._wakeups._sub))
            assert answers == []
            job_id = await other.schedule("t", None)
    assert answers[0].status_code == 200, answers[0].text
    assert [lease["id"] for lease in answers[0].json()["leases"]] == [job_id]


async def test_dequeue_answers_204_at_its_timeout(client: httpx2.AsyncClient, scheduler: Scheduler) -> None:
    with anyio.fail_after(WAIT):
        r = await client.post("/api/dequeue", json={"queues": ["q"], "timeout": 0.2})
        assert (r.status_code, r.content) == (204, b"")
        assert (await client.post("/api/dequeue", json={"timeout": 0})).status_code == 204
        assert (await client.post("/api/dequeue", json={"types": ["nope"], "timeout": 0})).status_code == 204
    await scheduler.schedule("t", None)
    assert (await client.post("/api/dequeue", json={"types": ["nope"], "timeout": 0})).status_code == 204


async def test_dequeue_with_n_claims_the_due_jobs_at_once_or_waits_for_the_first(
    client: httpx2.AsyncClient, scheduler: Scheduler, other: Scheduler
) -> None:
    low = [await scheduler.schedule("t", {"i": i}, priority=5) for i in range(3)]
    high = await scheduler.schedule("t", None, priority=-5)
    r = await _dequeue(client, n=3)
    assert [lease["id"] for lease in r.json()["leases"]] == [high, *low[:2]]
    r = await _dequeue(client, n=3)
    assert [lease["id"] for lease in r.json()["leases"]] == [low[2]]
    assert (await _dequeue(client, n=3)).status_code == 204

    answers: list[httpx2.Response] = []

    async def poll() -> None:
        answers.append(await client.post("/api/dequeue", json={"n": 5, "timeout": 30}))

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(poll)
            await until(lambda: bool(scheduler._consumer and scheduler._consumer._wakeups._events))
            job_id = await other.schedule("t", None)
    assert [lease["id"] for lease in answers[0].json()["leases"]] == [job_id]


async def _dequeue_raw(app: ASGIApp, body: dict[str, object], gone: anyio.Event) -> list[Message]:
    """POST /api/dequeue as raw ASGI: the client sends ``body``, then goes away once ``gone`` is set."""
    raw = orjson.dumps(body)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/dequeue",
        "raw_path": b"/api/dequeue",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    body_sent = False
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_a_client_gone_while_waiting_cancels_the_wait_and_leases_nothing(
    scheduler: Scheduler, other: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer_module, "RECHECK_S", 3600.0)
    gone = anyio.Event()
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_dequeue_raw, create_app(scheduler), {"queues": ["q"], "timeout": 60}, gone)
            await until(lambda: bool(scheduler._consumer and scheduler._consumer._wakeups._events))
            gone.set()
    assert scheduler._consumer is not None
    assert scheduler._consumer._wakeups._events == {}  # nobody waits any more
    assert scheduler._consumer._wakeups._sub is None
    job_id = await other.schedule("t", None)
    assert (await scheduler.get_job(job_id)).state is JobState.PENDING  # nothing took it


async def test_a_job_leased_for_a_client_that_went_away_is_released(
    scheduler: Scheduler, other: Scheduler, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # n=2 with nothing due: the request waits for a first job, then claims more. The client
    # goes away during that second claim, with the first job leased and no one to answer.
    gone = anyio.Event()
    real_claim = scheduler.claim

    async def claim(n: int, **options: object) -> object:
        if n == 1:  # the claim after the first lease
            gone.set()
            await anyio.Event().wait()  # until the disconnect cancels it
        return await real_claim(n, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(scheduler, "claim", claim)
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            ask: dict[str, object] = {"n": 2, "timeout": 60}
            tg.start_soon(_dequeue_raw, create_app(scheduler), ask, gone)
            await until(lambda: bool(scheduler._consumer and scheduler._consumer._wakeups._events))
            job_id = await other.schedule("t", None)
    record = await scheduler.get_job(job_id)
    assert record.state is JobState.PENDING
    logged = await runs(db, scheduler.schema)
    # Released unstarted: a run row that does not count against max_attempts.
    assert [(r["job_id"], r["attempt"], r["outcome"]) for r in logged] == [(job_id, 1, "snoozed")]


# -- leases --------------------------------------------------------------------------------


async def test_heartbeat_moves_the_deadline_and_reports_a_cancel(
    client: httpx2.AsyncClient, scheduler: Scheduler
) -> None:
    job_id = await scheduler.schedule("t", None)
    lease = await _lease(client, lease=5)
    before = dt.datetime.fromisoformat(str(lease["expires_at"]))
    r = await client.post(f"/api/leases/{lease['token']}/heartbeat", json={"lease": 3600})
    assert r.status_code == 200, r.text
    assert r.json()["token"] == lease["token"]
    after = dt.datetime.fromisoformat(r.json()["expires_at"])
    assert after - before > dt.timedelta(minutes=50)
    r = await client.post(f"/api/leases/{lease['token']}/heartbeat", headers=JSON)  # no body: 30 s
    assert r.status_code == 200, r.text
    assert dt.datetime.fromisoformat(r.json()["expires_at"]) < after

    await scheduler.cancel(job_id)
    assert_error(
        await client.post(f"/api/leases/{lease['token']}/heartbeat", headers=JSON), 409, "job_cancelled"
    )
    r = await client.post(f"/api/leases/{lease['token']}/fail", json={"error": "stopped"})
    assert r.json()["retry_at"] is None
    assert (await scheduler.get_job(job_id)).state is JobState.CANCELLED


async def test_fail_retries_at_the_given_time_or_after_the_given_delay(
    client: httpx2.AsyncClient, scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    first = await scheduler.schedule("t", None)
    lease = await _lease(client)
    at = dt.datetime(2100, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    r = await client.post(
        f"/api/leases/{lease['token']}/fail", json={"error": "boom", "retry_at": at.isoformat()}
    )
    assert r.status_code == 200, r.text
    assert dt.datetime.fromisoformat(r.json()["retry_at"]) == at
    record = await scheduler.get_job(first)
    assert (record.state, record.run_at) == (JobState.SCHEDULED, at)

    second = await scheduler.schedule("t", None)
    lease = await _lease(client)
    assert lease["id"] == second
    r = await client.post(f"/api/leases/{lease['token']}/fail", json={"error": "later", "retry_in": 600})
    again = dt.datetime.fromisoformat(r.json()["retry_at"])
    assert dt.timedelta(minutes=9) < again - dt.datetime.now(dt.UTC) <= dt.timedelta(minutes=11)
    logged = await runs(db, scheduler.schema)
    assert [(row["outcome"], row["error"]) for row in logged] == [("failed", "boom"), ("failed", "later")]


async def test_requeue_puts_the_job_back(client: httpx2.AsyncClient, scheduler: Scheduler) -> None:
    job_id = await scheduler.schedule("t", None)
    lease = await _lease(client)
    r = await client.post(f"/api/leases/{lease['token']}/requeue", headers=JSON)
    assert r.status_code == 200, r.text
    assert r.json() == {"token": lease["token"], "id": job_id, "requeued": True}
    assert (await scheduler.get_job(job_id)).state is JobState.PENDING
    assert (await _lease(client))["attempt"] == 2


async def test_a_stale_token_is_lease_lost_and_changes_nothing(
    client: httpx2.AsyncClient, scheduler: Scheduler, other: Scheduler, db: asyncpg.Connection
) -> None:
    job_id = await scheduler.schedule("t", None)
    first = await _lease(client)
    await db.execute(
        f"UPDATE \"{scheduler.schema}\".jobs SET lease_until = now() - interval '1 second' WHERE id = $1",
        job_id,
    )
    async with client_for(create_app(other)) as elsewhere:  # another app process on the schema
        second = await _lease(elsewhere)  # frees the expired lease, then takes it again
    assert (second["id"], second["attempt"]) == (job_id, 2)
    before = await _job_row(db, scheduler.schema, job_id), await runs(db, scheduler.schema)
    for action, body in (
        ("finish", {"result": "stale"}),
        ("heartbeat", {}),
        ("fail", {"error": "x"}),
        ("requeue", {}),
    ):
        error = assert_error(await client.post(f"/api/leases/{first['token']}/{action}", json=body), 409)
        assert error["error"] == "lease_lost"
        assert "held by worker" in error["message"]
    assert (await _job_row(db, scheduler.schema, job_id), await runs(db, scheduler.schema)) == before
    # Any app serves any lease: the token is all the state.
    assert (await client.post(f"/api/leases/{second['token']}/finish", headers=JSON)).status_code == 200
    assert (await scheduler.get_job(job_id)).state is JobState.SUCCEEDED
    assert_error(await client.post(f"/api/leases/{second['token']}/finish", headers=JSON), 409, "lease_lost")


async def test_dequeue_by_id_leases_a_waiting_job_and_refuses_others(
    client: httpx2.AsyncClient, scheduler: Scheduler
) -> None:
    later = await scheduler.schedule("t", None, run_at=dt.timedelta(hours=1))
    r = await client.post(f"/api/jobs/{later}/dequeue", json={"lease": 60})
    assert r.status_code == 200, r.text
    (lease,) = r.json()["leases"]
    assert (lease["id"], lease["lease_s"]) == (later, 60.0)
    error = assert_error(await client.post(f"/api/jobs/{later}/dequeue", headers=JSON), 409, "not_pending")
    assert "running" in error["message"]
    assert_error(await client.post("/api/jobs/424242/dequeue", headers=JSON), 404, "not_found")
    assert_error(await client.post("/api/jobs/0/dequeue", headers=JSON), 400, "bad_request")


# -- refusals ------------------------------------------------------------------------------


BAD_DEQUEUES = [
    {"types": "t"},
    {"types": []},
    {"types": [1]},
    {"queues": ["x" * 201]},
    {"queues": ["a\x00"]},
    {"timeout": 61},
    {"timeout": -1},
    {"timeout": "1"},
    {"timeout": True},
    {"lease": 0},
    {"lease": 86401},
    {"lease": 1e308},
    {"n": 0},
    {"n": 1001},
    {"n": 1.5},
    {"n": True},
    {"bogus": 1},
]


@pytest.mark.parametrize("body", BAD_DEQUEUES)
async def test_a_bad_dequeue_body_is_400_and_leases_nothing(
    client: httpx2.AsyncClient, scheduler: Scheduler, body: dict[str, object]
) -> None:
    job_id = await scheduler.schedule("t", None)
    assert_error(await client.post("/api/dequeue", json={"timeout": 0, **body}), 400, "bad_request")
    assert (await scheduler.get_job(job_id)).state is JobState.PENDING


async def test_malformed_bodies_and_tokens_are_400(client: httpx2.AsyncClient, scheduler: Scheduler) -> None:
    await scheduler.schedule("t", None)
    token = (await _lease(client))["token"]
    assert_error(await client.post("/api/dequeue", content=b"{", headers=JSON), 400, "bad_request")
    assert_error(await client.post("/api/dequeue", content=b"[]", headers=JSON), 400, "bad_request")
    for bad in (
        "abc",
        "1-2",
        "1-2-3-4",
        "0-1-1",
        "1-0-1",
        "99999999999999999999-1-1",
        "1-1-" + "9" * 80,
        "-1-1-1",
    ):
        assert_error(await client.post(f"/api/leases/{bad}/finish", headers=JSON), 400, "bad_request")
    for action, body in (
        ("finish", {"results": 1}),
        ("heartbeat", {"lease": -1}),
        ("heartbeat", {"lease": "10"}),
        ("fail", {}),
        ("fail", {"error": ""}),
        ("fail", {"error": 1}),
        ("fail", {"error": "x", "retry_at": "2030-01-01T00:00:00"}),
        ("fail", {"error": "x", "retry_at": "soon"}),
        ("fail", {"error": "x", "retry_at": "9999-12-31T23:59:59-14:00"}),
        ("fail", {"error": "x", "retry_in": -5}),
        ("fail", {"error": "x", "retry_in": 5, "retry_at": "2030-01-01T00:00:00+00:00"}),
        ("requeue", {"x": 1}),
    ):
        assert_error(await client.post(f"/api/leases/{token}/{action}", json=body), 400, "bad_request")
    # None of it touched the lease.
    assert (await client.post(f"/api/leases/{token}/finish", headers=JSON)).status_code == 200


async def test_the_pull_routes_need_the_token_and_a_read_only_app_refuses_them(
    make_client: ClientFactory, scheduler: Scheduler
) -> None:
    job_id = await scheduler.schedule("t", None)
    paths = [
        "/api/dequeue",
        f"/api/jobs/{job_id}/dequeue",
        *(f"/api/leases/{job_id}-1-1/{a}" for a in ("heartbeat", "finish", "fail", "requeue")),
    ]
    async with make_client(token=TOKEN) as c:
        for path in paths:
            assert_error(await c.post(path, json={}), 401, "unauthorized")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        r = await c.post("/api/dequeue", content=b"", headers=auth)  # a bearer needs no JSON type
        assert r.status_code == 200, r.text
    async with make_client(read_only=True) as c:
        for path in paths:
            assert_error(await c.post(path, json={}), 403, "read_only")
    async with make_client() as c:
        assert_error(await c.post("/api/dequeue", content=b"{}", headers={"Content-Type": "text/plain"}), 415)


class _NoLeases(MemoryStore):
    """A custom backend without the lease statements."""

    lease_claim_many = None  # type: ignore[assignment]  # what a backend without leases lacks


async def test_a_backend_that_cannot_lease_answers_501_and_the_memory_one_serves() -> None:
    async with client_for(create_app(Scheduler.in_memory())) as c:
        assert (await c.post("/api/dequeue", json={"timeout": 0})).status_code == 204
    scheduler = Scheduler(backend=_NoLeases())
    async with client_for(create_app(scheduler)) as c:
        assert_error(await c.post("/api/dequeue", json={"timeout": 0}), 501, "not_supported")
        assert_error(await c.post("/api/leases/1-1-1/finish", headers=JSON), 501, "not_supported")
