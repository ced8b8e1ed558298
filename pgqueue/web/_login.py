"""The login form: ``/login`` (GET the form, POST the token) and ``/logout`` (POST).

The guard (``_security.py``) lets both through without the token and checks their CSRF
field like any page form's, so a cross-site page can neither log a browser in with its own
token nor log it out. The token cookie is HttpOnly and SameSite=Strict, scoped to the app's
root path; the form is the ``login.html`` template when it renders, else a bare built-in one.
After login the browser goes to ``next``, a path inside this app only (never another site).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ._security import TOKEN_COOKIE, context_of, cookie_path, csrf_token, is_secure, same

if TYPE_CHECKING:
    from starlette.types import Scope

__all__ = ["login_routes"]


def _app_path(scope: Scope, path: str) -> str:
    """A path of this app under its root path: a path, not a URL, so a proxy's scheme never leaks in."""
    root: str = scope.get("root_path", "")
    return root + path


def _safe_next(scope: Scope, value: str | None) -> str:
    """Where the login form sends the user: a path inside this app, never another site."""
    root: str = scope.get("root_path", "")
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return root + "/"
    return root + value


_LOGIN_FORM = (
    "<!doctype html><html><head><meta charset=utf-8><title>{title} - log in</title></head><body>"
    "<h1>{title}</h1><form method=post action='{action}'>"
    "<input type=hidden name=csrf value='{csrf}'><input type=hidden name=next value='{next}'>"
    "<label>Token <input type=password name=token autofocus required></label>"
    "<button type=submit>Log in</button></form>{error}</body></html>"
)


def _login_page(request: Request, *, error: str | None, status: int = 200) -> Response:
    ctx = context_of(request.scope)
    values = {
        "title": ctx.title,
        "action": _app_path(request.scope, "/login"),
        "csrf": csrf_token(request),
        "next": request.query_params.get("next", "/"),
        "error": error,
    }
    try:
        template = ctx.templates.get_template("login.html")
    except Exception:  # noqa: BLE001 - no (or a broken) login template: the built-in form
        escaped = {k: html.escape(v or "") for k, v in values.items() if k != "error"}
        page = _LOGIN_FORM.format(error=f"<p role=alert>{html.escape(error)}</p>" if error else "", **escaped)
        return HTMLResponse(page, status_code=status)
    return HTMLResponse(template.render(request=request, **values), status_code=status)


async def _login(request: Request) -> Response:
    """GET: the login form. POST (CSRF-checked by the guard): set the token cookie."""
    ctx = context_of(request.scope)
    if ctx.token is None:
        return RedirectResponse(_safe_next(request.scope, None), status_code=303)
    if request.method == "GET":
        return _login_page(request, error=None)
    async with request.form(max_files=0) as form:
        given = form.get("token")
        back = form.get("next")
    if not isinstance(given, str) or not same(given, ctx.token):
        return _login_page(request, error="Wrong token.", status=401)
    response = RedirectResponse(
        _safe_next(request.scope, back if isinstance(back, str) else None), status_code=303
    )
    response.set_cookie(
        TOKEN_COOKIE,
        ctx.token,
        path=cookie_path(request.scope),
        httponly=True,
        samesite="strict",
        secure=is_secure(request.scope),
    )
    return response


async def _logout(request: Request) -> Response:
    """POST (CSRF-checked by the guard): drop the token cookie."""
    response = RedirectResponse(_app_path(request.scope, "/login"), status_code=303)
    response.delete_cookie(
        TOKEN_COOKIE,
        path=cookie_path(request.scope),
        httponly=True,
        samesite="strict",
        secure=is_secure(request.scope),
    )
    return response


def login_routes() -> list[BaseRoute]:
    """``/login`` (GET form, POST token) and ``/logout`` (POST): the guard lets them through."""
    return [
        Route("/login", _login, methods=["GET", "POST"], name="login"),
        Route("/logout", _logout, methods=["POST"], name="logout"),
    ]
