"""pgqueue's web dashboard: a Starlette app of HTML pages and a JSON API (``pgqueue[web]``).

Mount it inside your ASGI app (``Mount("/jobs", app=create_app(scheduler))``) or serve it
with ``pgqueue dashboard``. It uses only the Scheduler's public API: no SQL lives here.
"""

from __future__ import annotations

from ._security import csrf_token
from .app import WebContext, create_app

__all__ = ["WebContext", "create_app", "csrf_token"]
