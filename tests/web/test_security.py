"""The guard: allowed hosts (400), token (401 and the login form), read-only (403), CSRF, headers, mounting.

CSRF is checked on a stub POST route added to a real app, which echoes the form it got:
that also shows the guard hands the body it read on to the route untouched.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from pgqueue import Job, Scheduler
from pgqueue.web import create_app
from pgqueue.web._security import CSRF_COOKIE, TOKEN_COOKIE, _sign
from tests.web.conftest import JSON, ClientFactory, client_for

pytestmark = pytest.mark.pg

TOKEN = "s3cret-token"
_CSRF = re.compile(r'name="?csrf"? value="([^"]+)"')
HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}
ACTIONS = [
    ("POST", "/api/jobs", {"type": "ok"}),
    ("POST", "/api/jobs/1/cancel", {}),
    ("POST", "/api/jobs/1/retry", {}),
    ("POST", "/api/jobs/1/suspend", {}),
    ("POST", "/api/jobs/1/resume", {}),
    ("DELETE", "/api/jobs/1", None),
    ("POST", "/api/jobs/retry", {}),
    ("POST", "/api/jobs/cancel", {"queue": "default"}),
]


async def _echo(request: Request) -> Response:
    async with request.form() as form:
        return JSONResponse({k: v for k, v in form.items() if isinstance(v, str)})


async def _crash(request: Request) -> Response:
    raise RuntimeError("a bug")


def with_stubs(app: Starlette) -> Starlette:
    """The app with a POST page route that echoes its form, and routes that crash."""
    app.router.routes.extend(
        [
            Route("/echo", _echo, methods=["POST"]),
            Route("/crash", _crash),
        ]
    )
    return app


async def login_token(c: httpx2.AsyncClient, prefix: str = "") -> str:
    """The CSRF token of the login form (its GET also sets the CSRF cookie)."""
    page = await c.get(f"{prefix}/login")
    assert page.status_code == 200
    found = _CSRF.search(page.text)
    assert found is not None, page.text
    return found.group(1)


@pytest.fixture
async def guarded(scheduler: Scheduler) -> AsyncIterator[httpx2.AsyncClient]:
    async with client_for(with_stubs(create_app(scheduler, token=TOKEN))) as c:
        yield c


# -- host --------------------------------------------------------------------------------

LOOPBACK = ["localhost", "127.0.0.1", "::1"]
REBOUND = ["evil.example", "evil.example:8080", "localhost.evil.example", "127.0.0.1.evil.example", "[::2]"]


@pytest.fixture
async def loopback_only(scheduler: Scheduler) -> AsyncIterator[httpx2.AsyncClient]:
    @scheduler.job("ok")
    async def ok(job: Job) -> None:
        return None

    async with client_for(create_app(scheduler, allowed_hosts=LOOPBACK), "http://127.0.0.1:8080") as c:
        yield c


@pytest.mark.parametrize("host", REBOUND)
async def test_a_foreign_host_is_refused_on_pages_and_the_api(
    loopback_only: httpx2.AsyncClient, scheduler: Scheduler, host: str
) -> None:
    """A rebound name reaches 127.0.0.1 with its own Host, and its Origin matches that Host."""
    rebound = {"Host": host}
    page = await loopback_only.get("/jobs", headers=rebound)
    assert page.status_code == 400
    assert page.headers["content-type"].startswith("text/html")
    assert "Bad host" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    got = await loopback_only.get("/api/stats", headers=rebound)
    assert (got.status_code, got.json()["error"]) == (400, "bad_host")
    same_origin = {**rebound, "Origin": f"http://{host}"}
    posted = await loopback_only.post("/api/jobs", json={"type": "ok"}, headers=same_origin)
    assert (posted.status_code, posted.json()["error"]) == (400, "bad_host")
    assert (await scheduler.list_jobs()).items == ()  # nothing was written


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:8080", "LocalHost", "[::1]:8080", "[::1]"])
async def test_a_loopback_host_with_or_without_a_port_is_served(
    loopback_only: httpx2.AsyncClient, scheduler: Scheduler, host: str
) -> None:
    assert (await loopback_only.get("/", headers={"Host": host})).status_code == 200
    posted = await loopback_only.post("/api/jobs", json={"type": "ok"}, headers={"Host": host})
    assert posted.status_code == 201, posted.text
    assert len((await scheduler.list_jobs()).items) == 1


async def test_the_host_is_checked_before_the_token(scheduler: Scheduler) -> None:
    app = create_app(scheduler, token=TOKEN, allowed_hosts=["dashboard.internal"])
    async with client_for(app, "http://dashboard.internal") as c:
        assert (await c.get("/api/stats")).status_code == 401
        refused = await c.get("/api/stats", headers={"Host": "evil.example"})
        assert (refused.status_code, refused.json()["error"]) == (400, "bad_host")


@pytest.mark.parametrize("hosts", ["localhost", [], [""], [5]])
def test_allowed_hosts_must_name_hosts(scheduler: Scheduler, hosts: object) -> None:
    with pytest.raises(ValueError, match="allowed_hosts"):
        create_app(scheduler, allowed_hosts=hosts)  # type: ignore[arg-type]


# -- token -------------------------------------------------------------------------------


async def test_the_api_needs_the_token(guarded: httpx2.AsyncClient) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": ""},
    ):
        r = await guarded.get("/api/stats", headers=headers)
        assert r.status_code == 401
        assert r.json()["error"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")
    r = await guarded.get("/api/stats", headers={b"Authorization": "Bearer ünïcode".encode()})
    assert r.status_code == 401  # a non-ASCII guess is refused, not a crash in compare_digest
    ok = await guarded.get("/api/stats", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    assert ok.json() == {"by_queue": {}, "by_type": {}}


async def test_a_bearer_write_needs_no_json_content_type(guarded: httpx2.AsyncClient) -> None:
    """A bearer header is never sent by a browser on its own: such a request is no forgery."""
    r = await guarded.post("/api/jobs/1/retry", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 404  # reached the route: no job 1


async def test_pages_send_to_the_login_form_and_the_cookie_opens_them(guarded: httpx2.AsyncClient) -> None:
    r = await guarded.get("/jobs?state=failed")
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fjobs%3Fstate%3Dfailed"
    assert (await guarded.post("/echo", data={"a": "b"})).status_code == 401
    csrf = await login_token(guarded)
    wrong = await guarded.post("/login", data={"csrf": csrf, "token": "nope", "next": "/jobs"})
    assert wrong.status_code == 401
    assert TOKEN_COOKIE not in wrong.cookies
    r = await guarded.post("/login", data={"csrf": csrf, "token": TOKEN, "next": "/jobs?state=failed"})
    assert r.status_code == 303
    assert r.headers["location"] == "/jobs?state=failed"
    set_cookie = r.headers["set-cookie"].lower()
    assert f"{TOKEN_COOKIE}=" in set_cookie
    assert "httponly" in set_cookie
    assert "samesite=strict" in set_cookie
    assert (await guarded.get("/")).status_code == 200
    assert (await guarded.get("/api/stats")).status_code == 200  # the login cookie opens the API too
    out = await guarded.post("/logout", data={"csrf": csrf})
    assert out.status_code == 303
    assert (await guarded.get("/")).status_code == 303


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x"]
)
async def test_login_never_redirects_to_another_site(guarded: httpx2.AsyncClient, target: str) -> None:
    csrf = await login_token(guarded)
    r = await guarded.post("/login", data={"csrf": csrf, "token": TOKEN, "next": target})
    assert r.headers["location"] == "/"


async def test_login_is_csrf_checked_and_static_files_are_public(guarded: httpx2.AsyncClient) -> None:
    await login_token(guarded)
    assert (await guarded.post("/login", data={"token": TOKEN})).status_code == 403
    assert (await guarded.get("/static/dashboard.css")).status_code == 200


async def test_without_a_token_login_is_a_redirect_home(client: httpx2.AsyncClient) -> None:
    r = await client.get("/login")
    assert (r.status_code, r.headers["location"]) == (303, "/")


# -- read-only ---------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), ACTIONS)
async def test_read_only_refuses_every_api_action(
    make_client: ClientFactory, method: str, path: str, body: object
) -> None:
    async with make_client(read_only=True) as c:
        r = await c.request(method, path, json=body) if body is not None else await c.request(method, path)
        assert r.status_code == 403
        assert r.json()["error"] == "read_only"
        assert (await c.get("/api/stats")).status_code == 200


async def test_read_only_refuses_page_forms_but_not_the_login(scheduler: Scheduler) -> None:
    async with client_for(with_stubs(create_app(scheduler, read_only=True, token=TOKEN))) as c:
        csrf = await login_token(c)
        assert (await c.post("/login", data={"csrf": csrf, "token": TOKEN})).status_code == 303
        r = await c.post("/echo", data={"csrf": csrf})
        assert r.status_code == 403
        assert "text/html" in r.headers["content-type"]
        r = await c.post("/api/jobs", json={"type": "ok"}, headers={"Authorization": f"Bearer {TOKEN}"})
        assert (r.status_code, r.json()["error"]) == (403, "read_only")


# -- CSRF --------------------------------------------------------------------------------


@pytest.fixture
async def open_app(scheduler: Scheduler) -> AsyncIterator[httpx2.AsyncClient]:
    async with client_for(with_stubs(create_app(scheduler))) as c:
        yield c


async def _page_token(c: httpx2.AsyncClient) -> str:
    """The CSRF token a page's form carries: the page's GET sets the cookie it signs."""
    r = await c.get("/")
    assert r.status_code == 200
    assert CSRF_COOKIE in c.cookies
    return _sign(_app_secret(c), c.cookies[CSRF_COOKIE])  # what csrf_token() gives a page


def _app_secret(c: httpx2.AsyncClient) -> bytes:
    transport = c._transport
    assert isinstance(transport, httpx2.ASGITransport)
    app = transport.app
    assert isinstance(app, Starlette)
    secret: bytes = app.state.pgqueue.csrf_secret
    return secret


async def test_a_form_without_or_with_a_wrong_csrf_token_is_refused(open_app: httpx2.AsyncClient) -> None:
    token = await _page_token(open_app)
    assert (await open_app.post("/echo", data={"a": "1"})).status_code == 403
    assert (await open_app.post("/echo", data={"a": "1", "csrf": "0" * 64})).status_code == 403
    assert (await open_app.post("/echo", data={"a": "1", "csrf": token[:-1]})).status_code == 403
    assert (
        await open_app.post("/echo", content=b"a=1", headers={"Content-Type": "text/plain"})
    ).status_code == 403
    r = await open_app.post("/echo", data={"a": "1", "csrf": token})
    assert r.status_code == 200
    assert r.json() == {"a": "1", "csrf": token}  # the route read the body the guard had read
    r = await open_app.post("/echo", data={"b": "2"}, headers={"X-CSRF-Token": token})
    assert r.json() == {"b": "2"}


async def test_a_token_without_its_cookie_or_from_another_app_is_refused(
    open_app: httpx2.AsyncClient, scheduler: Scheduler
) -> None:
    token = await _page_token(open_app)
    nonce = open_app.cookies[CSRF_COOKIE]
    open_app.cookies.clear()
    assert (
        await open_app.post("/echo", data={"csrf": token})
    ).status_code == 403  # a fresh cookie, not this one
    async with client_for(with_stubs(create_app(scheduler))) as other:
        other.cookies.set(CSRF_COOKIE, nonce)
        assert (await other.post("/echo", data={"csrf": token})).status_code == 403  # another secret


async def test_a_foreign_origin_is_refused_and_the_own_one_accepted(open_app: httpx2.AsyncClient) -> None:
    token = await _page_token(open_app)
    for origin in ("http://evil.example", "null", "http://testserver.evil.example"):
        r = await open_app.post("/echo", data={"csrf": token}, headers={"Origin": origin})
        assert r.status_code == 403, origin
    r = await open_app.post("/echo", data={"csrf": token}, headers={"Origin": "http://testserver"})
    assert r.status_code == 200
    api = await open_app.post("/api/jobs", json={"type": "ok"}, headers={"Origin": "http://evil.example"})
    assert (api.status_code, api.json()["error"]) == (403, "csrf")


async def test_an_oversized_form_is_refused_before_it_is_parsed(open_app: httpx2.AsyncClient) -> None:
    token = await _page_token(open_app)
    r = await open_app.post("/echo", data={"csrf": token, "big": "x" * (1 << 20)})
    assert r.status_code == 413


# -- headers, errors, mounting -----------------------------------------------------------


async def test_every_response_carries_the_security_headers(scheduler: Scheduler) -> None:
    app = with_stubs(create_app(scheduler, token=TOKEN))
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        responses = [
            await c.get("/"),  # redirect to the login form
            await c.get("/login"),
            await c.get("/static/dashboard.css"),
            await c.get("/api/stats"),  # 401
            await c.get("/api/stats", headers=bearer),
            await c.get("/api/jobs/999", headers=bearer),  # 404
            await c.get("/api/nope", headers=bearer),
            await c.post("/api/jobs", content=b"x", headers={**bearer, **JSON}),  # 400
            await c.get("/crash", headers=bearer),  # 500
        ]
    for r in responses:
        for name, value in HEADERS.items():
            assert r.headers.get(name) == value, (r.request.url, r.status_code, name)
    crash = responses[-1]
    assert crash.status_code == 500
    assert "a bug" not in crash.text


async def test_the_app_works_mounted_under_a_prefix(scheduler: Scheduler) -> None:
    outer = Starlette(routes=[Mount("/jobs", app=with_stubs(create_app(scheduler, token=TOKEN)))])
    async with client_for(outer) as c:
        r = await c.get("/jobs/api/stats", headers={"Authorization": f"Bearer {TOKEN}"})
        assert (r.status_code, r.json()) == (200, {"by_queue": {}, "by_type": {}})
        spec = (await c.get("/jobs/api/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})).json()
        assert spec["servers"] == [{"url": "/jobs/api"}]
        missing = await c.get("/jobs/api/nope", headers={"Authorization": f"Bearer {TOKEN}"})
        assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
        r = await c.get("/jobs/")
        assert (r.status_code, r.headers["location"]) == (303, "/jobs/login?next=%2F")
        page = await c.get("/jobs/login")
        assert 'action="/jobs/login"' in page.text or "action='/jobs/login'" in page.text
        assert "path=/jobs" in page.headers["set-cookie"].lower()
        csrf = await login_token(c, "/jobs")
        r = await c.post("/jobs/login", data={"csrf": csrf, "token": TOKEN, "next": "/"})
        assert (r.status_code, r.headers["location"]) == (303, "/jobs/")
        assert (await c.get("/jobs/")).status_code == 200
        echoed = await c.post("/jobs/echo", data={"csrf": csrf, "x": "y"})
        assert echoed.json() == {"csrf": csrf, "x": "y"}
