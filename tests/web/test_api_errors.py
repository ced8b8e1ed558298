"""The API's refusals: each bad request gets its status and a JSON error body, never a 500.

A table of bad requests (bad JSON, wrong types, unknown states, limits out of range, bad
cursors, params the model refuses, an unregistered type) runs against one real app; then
unknown ids (404), forbidden transitions (409), an unreachable database and an unmigrated
schema (503), and markup in an error text, which comes back as JSON string data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest
from pydantic import BaseModel

from pgqueue import Job, Scheduler
from pgqueue.web import create_app
from tests.contract._helpers import run_until_ended
from tests.web.conftest import JSON, client_for

pytestmark = pytest.mark.pg

XSS = "<script>alert(1)</script>"


class Order(BaseModel):
    order_id: int


@pytest.fixture
async def api(scheduler: Scheduler) -> AsyncIterator[httpx2.AsyncClient]:
    @scheduler.job("ok")
    async def ok(job: Job) -> None:
        return None

    @scheduler.job("order", params=Order)
    async def order(job: Job) -> None:
        return None

    async with client_for(create_app(scheduler)) as c:
        yield c


def assert_error(r: httpx2.Response, status: int, code: str | None = None) -> dict[str, str]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body: dict[str, str] = r.json()
    assert set(body) == {"error", "message"}
    assert isinstance(body["message"], str)
    assert body["message"]
    if code is not None:
        assert body["error"] == code
    return body


BAD_GETS = [
    "/api/jobs?state=bogus",
    "/api/jobs?limit=0",
    "/api/jobs?limit=501",
    "/api/jobs?limit=ten",
    "/api/jobs?limit=-1",
    "/api/jobs?limit=1e2",
    "/api/jobs?cursor=not-a-cursor",
    "/api/jobs?cursor=",
    "/api/jobs?queue=",
    "/api/jobs?type=" + "x" * 300,
    "/api/jobs/abc",
    "/api/jobs/0",
    "/api/jobs/-3",
    "/api/jobs/99999999999999999999",
    "/api/jobs/%EF%BC%91",  # a fullwidth digit: isdigit() but no id
    "/api/activity?window_s=abc",
    "/api/activity?window_s=0",
    "/api/activity?window_s=nan",
    "/api/activity?window_s=inf",
    "/api/activity?bucket_s=-60",
    "/api/activity?window_s=60&bucket_s=120",
    "/api/activity?window_s=864000&bucket_s=1",
    "/api/queues?window_s=-5",
    "/api/queues?window_s=1e-300",
    "/api/activity?window_s=1e-3&bucket_s=1e-12",
    "/api/queues?window_s=x",
]


@pytest.mark.parametrize("path", BAD_GETS)
async def test_bad_queries_are_400(api: httpx2.AsyncClient, path: str) -> None:
    assert_error(await api.get(path), 400)


BAD_SCHEDULES: list[tuple[bytes | None, dict[str, object] | list[object] | None, str]] = [
    (b"{not json", None, "bad_request"),
    (b"", None, "bad_request"),
    (None, [1, 2], "bad_request"),
    (None, {"params": {}}, "bad_request"),
    (None, {"type": 5}, "bad_request"),
    (None, {"type": "ok", "prams": {}}, "bad_request"),
    (None, {"type": "nobody", "params": {}}, "unknown_type"),
    (None, {"type": "order", "params": {"order_id": "seven"}}, "invalid_params"),
    (None, {"type": "order"}, "invalid_params"),
    (None, {"type": "ok", "run_at": "2030-01-01T00:00:00"}, "bad_request"),
    (None, {"type": "ok", "run_at": "tomorrow"}, "bad_request"),
    (None, {"type": "ok", "run_at": 12}, "bad_request"),
    (None, {"type": "ok", "run_at": "9999-12-31T23:59:59-14:00"}, "bad_request"),  # no UTC equivalent
    (None, {"type": "ok", "run_at": "0001-01-01T00:00:00+14:00"}, "bad_request"),
    (None, {"type": "ok", "run_at": "2030-01-01T00:00:00Z", "delay_s": 5}, "bad_request"),
    (None, {"type": "ok", "delay_s": -1}, "bad_request"),
    (None, {"type": "ok", "delay_s": 1e300}, "bad_request"),
    (None, {"type": "ok", "delay_s": "5"}, "bad_request"),
    (None, {"type": "ok", "delay_s": True}, "bad_request"),
    (None, {"type": "ok", "priority": "high"}, "bad_request"),
    (None, {"type": "ok", "priority": True}, "bad_request"),
    (None, {"type": "ok", "priority": 10**9}, "bad_request"),
    (None, {"type": "ok", "priority": 1.5}, "bad_request"),
    (None, {"type": "ok", "queue": 3}, "bad_request"),
    (None, {"type": "ok", "queue": ""}, "bad_request"),
    (None, {"type": "ok", "queue": "a\u0000b"}, "bad_request"),
    (None, {"type": "ok", "unique_key": ""}, "bad_request"),
    (None, {"type": "ok", "unique_key": ["k"]}, "bad_request"),
]


@pytest.mark.parametrize(("raw", "body", "code"), BAD_SCHEDULES)
async def test_bad_schedule_bodies_are_400(
    api: httpx2.AsyncClient,
    scheduler: Scheduler,
    raw: bytes | None,
    body: dict[str, object] | list[object] | None,
    code: str,
) -> None:
    if raw is not None:
        r = await api.post("/api/jobs", content=raw, headers=JSON)
    else:
        r = await api.post("/api/jobs", json=body)
    assert_error(r, 400, code)
    assert (await scheduler.list_jobs()).items == ()  # nothing was written


async def test_bad_bulk_bodies_are_400(api: httpx2.AsyncClient) -> None:
    assert_error(await api.post("/api/jobs/cancel", json={}), 400)  # cancel_many needs a filter
    assert_error(await api.post("/api/jobs/cancel", json={"queue": 5}), 400)
    assert_error(await api.post("/api/jobs/retry", json={"queues": "a"}), 400)
    assert_error(await api.post("/api/jobs/retry", json="all"), 400)
    assert_error(await api.post("/api/jobs/retry", content=b"[", headers=JSON), 400)
    assert_error(await api.post("/api/jobs/1/cancel", json={"force": True}), 400)


async def test_writes_without_a_json_content_type_are_415(
    api: httpx2.AsyncClient, scheduler: Scheduler
) -> None:
    """A cross-site HTML form can send only form or text types: the API takes none of them."""
    for headers in (
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {},
    ):
        r = await api.post("/api/jobs", content=b'{"type": "ok"}', headers=headers)
        assert_error(r, 415, "unsupported_media_type")
    r = await api.post("/api/jobs", data={"type": "ok"})
    assert_error(r, 415)
    multipart = await api.post("/api/jobs/retry", files={"f": ("a.txt", b"x")})
    assert_error(multipart, 415)
    assert (await scheduler.list_jobs()).items == ()


async def test_a_body_over_a_mebibyte_is_413(api: httpx2.AsyncClient) -> None:
    big = b'{"type": "ok", "params": "' + b"x" * (1 << 20) + b'"}'
    assert_error(await api.post("/api/jobs", content=big, headers=JSON), 413, "too_large")


@pytest.mark.parametrize("declared", ["abc", "-1", "1e3", "12, 12", "٣"])
async def test_a_malformed_content_length_is_400(
    api: httpx2.AsyncClient, scheduler: Scheduler, declared: str
) -> None:
    """The header as a client sent it (an ASGI server in front may pass it through unchecked)."""
    headers = {b"content-type": b"application/json", b"content-length": declared.encode()}
    r = await api.post("/api/jobs", content=b'{"type": "ok"}', headers=headers)
    body = assert_error(r, 400, "bad_request")
    assert "Content-Length" in body["message"]
    assert (await scheduler.list_jobs()).items == ()


async def test_a_content_length_of_many_digits_is_413(api: httpx2.AsyncClient) -> None:
    r = await api.post("/api/jobs", content=b"{}", headers={**JSON, "Content-Length": "9" * 5000})
    assert_error(r, 413, "too_large")
    r = await api.post(
        "/api/jobs", content=b'{"type": "ok"}', headers={**JSON, "Content-Length": "0" * 5000 + "14"}
    )
    assert r.status_code == 201, r.text


async def test_unknown_ids_routes_and_methods(api: httpx2.AsyncClient) -> None:
    assert_error(await api.get("/api/jobs/424242"), 404, "not_found")
    for action in ("cancel", "retry", "suspend", "resume"):
        assert_error(await api.post(f"/api/jobs/424242/{action}", headers=JSON), 404, "not_found")
    assert_error(await api.delete("/api/jobs/424242"), 404, "not_found")
    assert_error(await api.post("/api/jobs/1/explode", headers=JSON), 404, "not_found")
    assert_error(await api.get("/api/nothing/here"), 404, "not_found")
    assert_error(await api.get("/api/jobs/"), 404, "not_found")  # no redirect: a script gets its answer
    r = await api.put("/api/jobs", json={})
    assert_error(r, 405, "method_not_allowed")
    assert "GET" in r.headers["allow"]


async def test_a_state_that_forbids_the_action_is_409(api: httpx2.AsyncClient, scheduler: Scheduler) -> None:
    done = int(await scheduler.schedule("ok"))
    await run_until_ended(scheduler, done)
    pending = int(await scheduler.schedule("ok", queue="idle"))
    for path in (
        f"/api/jobs/{done}/cancel",
        f"/api/jobs/{done}/suspend",
        f"/api/jobs/{done}/retry",  # a success is not retried
        f"/api/jobs/{pending}/resume",
        f"/api/jobs/{pending}/retry",
    ):
        body = assert_error(await api.post(path, headers=JSON), 409, "invalid_state")
        assert "job" in body["message"]
    assert_error(await api.delete(f"/api/jobs/{done}"), 409, "invalid_state")


async def test_markup_in_an_error_comes_back_as_json_string_data(
    api: httpx2.AsyncClient, scheduler: Scheduler
) -> None:
    r = await api.get("/api/jobs", params={"state": XSS})
    body = assert_error(r, 400)
    assert XSS in body["message"]  # the text as data, in a JSON string ...
    assert r.headers["x-content-type-options"] == "nosniff"  # ... that no browser renders as HTML
    assert "<script>" not in r.text.split('"message":')[0]

    @scheduler.job("xss")
    async def xss(job: Job) -> None:
        raise RuntimeError(XSS)

    job_id = int(await scheduler.schedule("xss"))
    await run_until_ended(scheduler, job_id)
    got = await api.get(f"/api/jobs/{job_id}")
    assert got.headers["content-type"] == "application/json"
    assert XSS in got.json()["last_error"]


async def test_an_unreachable_database_is_503() -> None:
    s = Scheduler("postgresql://postgres@127.0.0.1:1/postgres")  # nothing listens on port 1
    try:
        async with client_for(create_app(s)) as c:
            for r in (
                await c.get("/api/stats"),
                await c.get("/api/jobs"),
                await c.post("/api/jobs/1/retry", json={}),
            ):
                assert_error(r, 503, "unavailable")
    finally:
        await s.close()


async def test_an_unmigrated_schema_is_503(dsn: str) -> None:
    s = Scheduler(dsn, schema="t_never_migrated")
    try:
        async with client_for(create_app(s)) as c:
            body = assert_error(await c.get("/api/jobs"), 503, "schema")
            assert "migrate" in body["message"]
    finally:
        await s.close()
