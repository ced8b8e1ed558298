"""The dashboard's Starlette app: :func:`create_app` and the context its routes share.

One app serves the HTML pages (at ``/``) and the JSON API (at ``/api``); both read the
same frozen :class:`WebContext` from ``app.state`` and sit behind the same guard
(``_security.py``). Every link is built from ``request.url_for`` or the ASGI root path,
so the app works as well at ``/`` as mounted under a prefix (``Mount("/jobs", app=...)``).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Router
from starlette.templating import Jinja2Templates

from . import api, pages
from ._context import WebContext, web_context
from ._login import login_routes
from ._responses import exception_handlers
from ._security import Guard, SecurityHeaders, check_allowed_hosts, csrf_token

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pgqueue._scheduler import Scheduler

__all__ = ["TEMPLATES_DIR", "WebContext", "create_app", "web_context"]

TEMPLATES_DIR = Path(__file__).parent / "templates"
"""The Jinja2 templates of the pages (``pgqueue/web/templates/``)."""

_CSRF_SECRET_BYTES = 32


def create_app(
    scheduler: Scheduler,
    *,
    token: str | None = None,
    read_only: bool = False,
    title: str = "pgqueue",
    allowed_hosts: Sequence[str] | None = None,
) -> Starlette:
    """The dashboard as an ASGI app, over an open ``scheduler`` (the caller opens and closes it).

    ``token``: when given, every request must carry it (``Authorization: Bearer`` for the
    API, a cookie set by the ``/login`` form for the pages). ``read_only``: every action
    answers 403. Serve it on a public address only with one of the two.

    ``allowed_hosts``: the names the app is served under (``"localhost"``, ``"127.0.0.1"``,
    ``"::1"``; no port). A request whose ``Host`` header names another gets a 400 before
    anything else runs. An application that mounts the dashboard without a token should
    pass them: else a web page whose name its attacker re-resolves to the server's address
    (DNS rebinding) counts, for the browser, as the dashboard's own origin, and its script
    can read and act on every job. ``pgqueue dashboard`` passes the loopback names when it
    serves without a token. None (the default): any Host.
    """
    if token is not None and not token:
        msg = "token must be a non-empty string or None"
        raise ValueError(msg)
    hosts = check_allowed_hosts(allowed_hosts)
    templates = Jinja2Templates(directory=TEMPLATES_DIR)
    templates.env.globals["csrf_token"] = csrf_token
    ctx = WebContext(
        scheduler=scheduler,
        token=token,
        read_only=read_only,
        title=title,
        templates=templates,
        csrf_secret=secrets.token_bytes(_CSRF_SECRET_BYTES),
    )
    app = Starlette(
        routes=[
            # No redirect of /api/jobs/ to /api/jobs: a script's typo gets a JSON 404, not a 307
            Mount("/api", app=Router(api.routes(), redirect_slashes=False), name="api"),
            *login_routes(),
            *pages.routes(),
        ],
        middleware=[Middleware(SecurityHeaders), Middleware(Guard, allowed_hosts=hosts)],
        exception_handlers=exception_handlers(),
    )
    app.state.pgqueue = ctx
    return app
