"""Random requests, from a fixed seed, never get a 500 or anything but JSON from the API.

A small in-house stand-in for a schemathesis run: odd values (NUL bytes, 2**64, 1e308, tiny
windows, bad dates, times with no UTC equivalent, nested junk) in every body field, query
parameter and path segment. Each answer must be below 500 and JSON, and each refusal must
carry the API's error shape.
"""

from __future__ import annotations

import random
import string
import urllib.parse

import httpx2
import orjson
import pytest

from pgqueue import Job, Scheduler
from pgqueue.web import create_app

pytestmark = pytest.mark.pg

_FIELDS = ["type", "params", "queue", "run_at", "delay_s", "priority", "unique_key"]
_PULL_FIELDS = ["types", "queues", "timeout", "lease", "n"]
_LEASE_FIELDS = ["lease", "result", "error", "retry_at", "retry_in"]
_REQUESTS = 600
_NUMBERS = [0, -1, 1, 2**15, -(2**15) - 1, 2**31, 2**63, -(2**63) - 1, 2**64 + 5, 10**30]
_FLOATS = [0.5, -1e308, 1e308, 1e-300, 3.0]
_TIMES = [
    "2030-01-01T00:00:00+00:00",
    "2030-01-01T00:00:00",
    "9999-12-31T23:59:59+14:00",
    "0001-01-01T00:00:00-14:00",
    "9999-12-31T23:59:59-14:00",  # past datetime's range once in UTC
    "0001-01-01T00:00:00+14:00",
    "2030-13-01",
    "",
]
_WORDS = ["ok", "default", "pending", "failed", "-", "0", "x" * 200, "x" * 201]


def _value(rnd: random.Random, depth: int = 0) -> object:  # noqa: PLR0911 - one return per kind of value
    kind = rnd.randrange(10)
    if kind == 0:
        return None
    if kind == 1:
        return rnd.choice([True, False])
    if kind == 2:
        return rnd.choice(_NUMBERS)
    if kind == 3:
        return rnd.choice(_FLOATS)
    if kind == 4:
        return "".join(rnd.choice(string.printable + "\x00\u2028é<>\"'") for _ in range(rnd.randrange(30)))
    if kind == 5:
        return rnd.choice(_TIMES)
    if kind == 6 and depth < 3:
        return [_value(rnd, depth + 1) for _ in range(rnd.randrange(4))]
    if kind == 7 and depth < 3:
        return {rnd.choice(["a", "type", "\x00"]): _value(rnd, depth + 1) for _ in range(rnd.randrange(4))}
    return rnd.choice(_WORDS)


def _segment(value: object) -> str:
    return urllib.parse.quote(str(value), safe="")


async def _one(c: httpx2.AsyncClient, rnd: random.Random) -> httpx2.Response | None:  # noqa: PLR0911 - one return per kind of request
    json_type = {"Content-Type": "application/json"}
    kind = rnd.randrange(6)
    if kind == 0:
        body = {f: _value(rnd) for f in rnd.sample(_FIELDS, rnd.randrange(1, len(_FIELDS)))}
        if rnd.random() < 0.7:
            body["type"] = "ok"
        try:
            raw = orjson.dumps(body)
        except orjson.JSONEncodeError:  # 2**64 and the like: not JSON that a client could send
            return None
        return await c.post("/api/jobs", content=raw, headers=json_type)
    if kind == 1:
        keys = rnd.sample(["state", "queue", "type", "limit", "cursor"], rnd.randrange(1, 5))
        return await c.get("/api/jobs", params={k: str(_value(rnd)) for k in keys})
    if kind == 2:
        method = rnd.choice(["GET", "DELETE", "POST"])
        return await c.request(method, f"/api/jobs/{_segment(_value(rnd))}", headers=json_type)
    if kind == 3:
        job = _segment(rnd.choice([1, 2, 3, 2**62, _value(rnd)]))
        action = rnd.choice(["cancel", "retry", "suspend", "resume", "x"])
        return await c.post(f"/api/jobs/{job}/{action}", headers=json_type)
    if kind == 5:
        return await _pull(c, rnd)
    keys = rnd.sample(["window_s", "bucket_s"], rnd.randrange(1, 3))
    path = rnd.choice(["/api/activity", "/api/queues"])
    return await c.get(path, params={k: str(_value(rnd)) for k in keys})


async def _pull(c: httpx2.AsyncClient, rnd: random.Random) -> httpx2.Response | None:
    """The pull routes: dequeue bodies (a valid wait is made 0: no request waits), lease paths."""
    json_type = {"Content-Type": "application/json"}
    if rnd.random() < 0.4:
        body = {f: _value(rnd) for f in rnd.sample(_PULL_FIELDS, rnd.randrange(1, len(_PULL_FIELDS)))}
        wait = body.get("timeout")
        if isinstance(wait, int | float) and not isinstance(wait, bool) and 0 < wait <= 60:
            body["timeout"] = 0
        body.setdefault("timeout", 0)
        if rnd.random() < 0.3:  # a valid one now and then: it leases the jobs the others scheduled
            body = {"timeout": 0, "n": rnd.choice([1, 2, 5])}
        path = rnd.choice(["/api/dequeue", f"/api/jobs/{_segment(rnd.choice([1, 2, _value(rnd)]))}/dequeue"])
    else:
        body = {f: _value(rnd) for f in rnd.sample(_LEASE_FIELDS, rnd.randrange(len(_LEASE_FIELDS)))}
        token = rnd.choice(["1-1-1", "2-1-1", "1-2-3", f"{2**63}-1-1", "1-1", _value(rnd)])
        action = rnd.choice(["heartbeat", "finish", "fail", "requeue", "x"])
        path = f"/api/leases/{_segment(token)}/{action}"
    try:
        raw = orjson.dumps(body)
    except orjson.JSONEncodeError:
        return None
    return await c.post(path, content=raw, headers=json_type)


async def test_random_requests_never_get_a_500(scheduler: Scheduler) -> None:
    @scheduler.job("ok")
    async def ok(job: Job) -> None:
        return None

    rnd = random.Random(7)
    statuses: dict[int, int] = {}
    transport = httpx2.ASGITransport(app=create_app(scheduler), raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
        for _ in range(_REQUESTS):
            r = await _one(c, rnd)
            if r is None:
                continue
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code < 500, (
                r.request.method,
                str(r.request.url),
                r.request.content[:200],
                r.text,
            )
            assert r.headers["content-type"] == "application/json", r.text
            if r.status_code >= 400:
                assert set(r.json()) == {"error", "message"}
    assert {200, 201, 400, 404, 409} <= set(statuses), statuses  # the requests reached every outcome
