"""The guard in front of every page and API route: token, read-only, CSRF, security headers.

Two pure ASGI middlewares (no ``BaseHTTPMiddleware``: nothing is buffered but a form body
the CSRF check reads, and a response streams through untouched):

- :class:`SecurityHeaders` adds a strict Content-Security-Policy (no inline script),
  ``nosniff``, ``DENY`` framing and a same-origin referrer to every response.
- :class:`Guard` decides, in this order, whether a request reaches its route:

  0. **host** (when the app has ``allowed_hosts``): a ``Host`` header naming no listed host
     is 400 before anything else runs. An open dashboard on loopback needs it: a site
     whose name an attacker re-resolves to 127.0.0.1 (DNS rebinding) is, to the browser,
     the same origin as its own pages, so the Origin check below passes, and its script
     could read and act on every job. The Host header still carries the attacker's name.
  1. **token** (when the app has one): the API takes ``Authorization: Bearer <token>`` or
     the login cookie; a page takes the ``pgqueue_token`` cookie (HttpOnly,
     SameSite=Strict) that the ``/login`` form sets. A page GET without it is sent to
     ``/login``; anything else answers 401. Tokens compare with ``hmac.compare_digest``.
  2. **read-only**: every POST, PUT, PATCH and DELETE answers 403 (``/login`` and
     ``/logout`` excepted: they change no job).
  3. **cross-site writes**: a write whose ``Origin`` (when sent) names another host is
     403, API or page. An API write that does not carry the bearer header must say
     ``Content-Type: application/json`` (a cross-site HTML form cannot send that type
     without a CORS preflight, which this app never grants): else 415. A bearer header is
     never sent by a browser on its own, so it exempts the request; DELETE needs nothing,
     as no form can send it. A page write must carry a valid CSRF token (form field
     ``csrf`` or header ``X-CSRF-Token``): else 403.

CSRF tokens are a *signed* double submit: the ``pgqueue_csrf`` cookie (HttpOnly,
SameSite=Strict) holds a random nonce, the form holds ``HMAC(secret, nonce)``, and the
secret is random per process. A plain double submit (cookie == field) falls to an attacker
who can plant a cookie from a sibling subdomain; with the HMAC, a planted nonce is useless
without the secret. It needs no server-side session, and a restart only invalidates the
forms open at that moment (reload the page). Several processes behind one address each
have their own secret, so such a setup needs sticky sessions for the forms.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING, Final
from urllib.parse import urlencode, urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response

from ._responses import API_SCOPE_KEY, SECURITY_HEADERS, html_error, json_error

if TYPE_CHECKING:
    from collections.abc import Sequence

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from ._context import WebContext

__all__ = [
    "CSRF_COOKIE",
    "TOKEN_COOKIE",
    "Guard",
    "SecurityHeaders",
    "check_allowed_hosts",
    "context_of",
    "cookie_path",
    "csrf_token",
    "host_name",
    "is_secure",
    "route_path",
    "same",
]

TOKEN_COOKIE: Final = "pgqueue_token"  # noqa: S105 - a cookie name, not a secret
CSRF_COOKIE: Final = "pgqueue_csrf"
CSRF_FIELD: Final = "csrf"
CSRF_HEADER: Final = "x-csrf-token"

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_FORM_BYTES = 1 << 20  # a page form (a job's params at most): anything larger is not ours
_NONCE_SCOPE_KEY = "pgqueue.csrf_nonce"
_NEW_NONCE_SCOPE_KEY = "pgqueue.csrf_new"
_OPEN_PATHS = frozenset({"/login", "/logout"})
_STATIC_PREFIX = "/static/"  # stylesheets and scripts: public, and the login page needs them


def route_path(scope: Scope) -> str:
    """The path inside this app: the request path without the root path it is mounted at."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


def _is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def context_of(scope: Scope) -> WebContext:
    """The context of the app this scope is in."""
    ctx: WebContext = scope["app"].state.pgqueue
    return ctx


def cookie_path(scope: Scope) -> str:
    """The path the app's cookies are set for: its root path, so two mounted apps keep theirs apart."""
    root: str = scope.get("root_path", "")
    return root or "/"


def is_secure(scope: Scope) -> bool:
    """Whether the request came over HTTPS: cookies are then marked Secure."""
    return scope.get("scheme") == "https"


def _sign(secret: bytes, nonce: str) -> str:
    return hmac.new(secret, nonce.encode(), hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time equality of two strings (bytes: compare_digest refuses non-ASCII str)."""
    return hmac.compare_digest(a.encode(), b.encode())


def csrf_token(request: HTTPConnection) -> str:
    """The CSRF token to put in a form of this page: ``<input type="hidden" name="csrf" value="...">``.

    It signs the nonce of the request's ``pgqueue_csrf`` cookie; when the request has none,
    the guard minted one and sets the cookie on this response.
    """
    nonce = request.scope.get(_NONCE_SCOPE_KEY)
    if not isinstance(nonce, str):  # a route outside the guard: mint one, set by no cookie
        nonce = secrets.token_urlsafe(16)
        request.scope[_NONCE_SCOPE_KEY] = nonce
    return _sign(context_of(request.scope).csrf_secret, nonce)


class SecurityHeaders:
    """Adds the security headers to every HTTP response (the app's outermost middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def host_name(host: str) -> str:
    """The name in a ``Host`` header or a listed host: lowercase, without port or IPv6 brackets."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8080
        end = host.find("]")
        return host[1:end] if end > 0 else host
    if host.count(":") == 1:  # name:port; more colons: a bare IPv6 address, no port
        return host.partition(":")[0]
    return host


def check_allowed_hosts(hosts: Sequence[str] | None) -> frozenset[str] | None:
    """``create_app``'s ``allowed_hosts`` as the guard compares them; ValueError for a bad list."""
    if hosts is None:
        return None
    if isinstance(hosts, str) or not all(isinstance(h, str) and host_name(h) for h in hosts):
        msg = f"allowed_hosts must be a sequence of host names or None, got {hosts!r}"
        raise ValueError(msg)
    if not hosts:
        msg = "allowed_hosts must name at least one host (None: any Host header)"
        raise ValueError(msg)
    return frozenset(host_name(h) for h in hosts)


class Guard:
    """Host, token, read-only and cross-site checks for every request (see the module docstring)."""

    def __init__(self, app: ASGIApp, allowed_hosts: frozenset[str] | None = None) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        headers = Headers(scope=scope)
        api = _is_api(path)
        scope[API_SCOPE_KEY] = api
        if self.allowed_hosts is not None:
            host = headers.get("host")
            if host is None or host_name(host) not in self.allowed_hosts:
                await _bad_host(host, api=api)(scope, receive, send)
                return
        ctx = context_of(scope)
        method: str = scope["method"]
        bearer = _bearer_ok(ctx, headers)
        if not api:
            _ensure_nonce(scope)
        refused = _auth_refusal(ctx, scope, path, api=api, bearer=bearer) or _write_refusal(
            ctx, path, method, headers, api=api, bearer=bearer
        )
        if refused is not None:
            await refused(scope, receive, send)
            return
        if not api and method not in _SAFE_METHODS:
            receive, refused = await _check_form_csrf(ctx, scope, receive, headers)
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, _with_nonce_cookie(scope, send))


def _bad_host(host: str | None, *, api: bool) -> Response:
    shown = "no Host header" if host is None else f"Host {host[:100]!r}"
    message = f"{shown} is not a name this dashboard is served under"
    return json_error(400, "bad_host", message) if api else html_error(400, "Bad host", message)


def _auth_refusal(ctx: WebContext, scope: Scope, path: str, *, api: bool, bearer: bool) -> Response | None:
    """401 (or, for a page GET, a redirect to the login form) when the app's token is missing."""
    if ctx.token is None or bearer or _cookie_ok(ctx, scope):
        return None
    if api:
        return json_error(
            401, "unauthorized", "a valid token is required", {"WWW-Authenticate": 'Bearer realm="pgqueue"'}
        )
    safe = scope["method"] in _SAFE_METHODS
    if path in _OPEN_PATHS or (safe and path.startswith(_STATIC_PREFIX)):
        return None
    if safe:
        return RedirectResponse(_login_url(scope, path), status_code=303)
    return html_error(401, "Unauthorized", "Log in first.")


def _write_refusal(
    ctx: WebContext, path: str, method: str, headers: Headers, *, api: bool, bearer: bool
) -> Response | None:
    """403 for a write to a read-only app or from a foreign origin; 415 for a non-JSON API write."""
    if method in _SAFE_METHODS:
        return None
    if ctx.read_only and path not in _OPEN_PATHS:
        message = "this dashboard is read-only"
        return json_error(403, "read_only", message) if api else html_error(403, "Read-only", message)
    if not _origin_ok(headers):
        message = "cross-origin request refused"
        return json_error(403, "csrf", message) if api else html_error(403, "Forbidden", message)
    if api and not bearer and method != "DELETE" and not _is_json(headers):
        return json_error(
            415, "unsupported_media_type", "send the request with Content-Type: application/json"
        )
    return None


def _bearer_ok(ctx: WebContext, headers: Headers) -> bool:
    if ctx.token is None:
        return False
    scheme, _, given = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and same(given.strip(), ctx.token)


def _cookie_ok(ctx: WebContext, scope: Scope) -> bool:
    if ctx.token is None:
        return False
    given = HTTPConnection(scope).cookies.get(TOKEN_COOKIE)
    return given is not None and same(given, ctx.token)


def _is_json(headers: Headers) -> bool:
    media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
    return media_type == "application/json"


def _origin_ok(headers: Headers) -> bool:
    """No Origin (a same-origin form in old browsers, curl), or one naming this very host."""
    origin = headers.get("origin")
    if origin is None:
        return True
    host = headers.get("host")
    return host is not None and origin != "null" and urlsplit(origin).netloc.lower() == host.lower()


def _login_url(scope: Scope, path: str) -> str:
    root: str = scope.get("root_path", "")
    query = HTTPConnection(scope).url.query
    back = path + ("?" + query if query else "")
    return f"{root}/login?{urlencode({'next': back})}"


def _ensure_nonce(scope: Scope) -> None:
    """Put the CSRF cookie's nonce in the scope, minting one (and marking it to be set) if absent."""
    nonce = HTTPConnection(scope).cookies.get(CSRF_COOKIE)
    if not nonce or len(nonce) > 64:  # noqa: PLR2004 - a nonce is 22 characters; longer ones are not ours
        nonce = secrets.token_urlsafe(16)
        scope[_NEW_NONCE_SCOPE_KEY] = True
    scope[_NONCE_SCOPE_KEY] = nonce


def _with_nonce_cookie(scope: Scope, send: Send) -> Send:
    """``send``, setting the CSRF cookie on the response when the guard minted its nonce."""
    if not scope.get(_NEW_NONCE_SCOPE_KEY):
        return send

    async def send_cookie(message: Message) -> None:
        if message["type"] == "http.response.start":
            cookie = Response()
            cookie.set_cookie(
                CSRF_COOKIE,
                scope[_NONCE_SCOPE_KEY],
                path=cookie_path(scope),
                httponly=True,
                samesite="strict",
                secure=is_secure(scope),
            )
            headers = MutableHeaders(scope=message)
            for name, value in cookie.raw_headers:
                if name == b"set-cookie":
                    headers.append("set-cookie", value.decode("latin-1"))
        await send(message)

    return send_cookie


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The whole request body, and whether it fits the form limit (reading stops past it)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), True
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_FORM_BYTES:
            return b"", False
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives ``body`` once, then defers to the real one (for disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _check_form_csrf(
    ctx: WebContext, scope: Scope, receive: Receive, headers: Headers
) -> tuple[Receive, Response | None]:
    """Read the body of a page write, check its CSRF token, and hand the body on unchanged."""
    body, fits = await _read_body(receive)
    if not fits:
        return receive, html_error(413, "Too large", "The form is too large.")
    given = headers.get(CSRF_HEADER)
    if given is None:
        request = Request(scope, _replay(body, receive))
        try:
            async with request.form(max_files=0) as form:
                field = form.get(CSRF_FIELD)
                given = field if isinstance(field, str) else None
        except Exception:  # noqa: BLE001 - a body that is no form carries no token: refused below
            given = None
    nonce = scope.get(_NONCE_SCOPE_KEY)
    fresh = bool(scope.get(_NEW_NONCE_SCOPE_KEY))
    if given is None or fresh or not isinstance(nonce, str) or not same(given, _sign(ctx.csrf_secret, nonce)):
        return receive, html_error(
            403, "Forbidden", "The form has expired or did not come from this site: reload it."
        )
    return _replay(body, receive), None
