"""The dashboard's Periodic page: every declaration, its next fire time and last outcome.

It lists what ``Scheduler.list_periodic()`` returns: the declarations of the dashboard's
scheduler (``pgqueue dashboard --app module:scheduler``) and the rows other processes
wrote. One read of the ``periodic`` table (a row per declaration) and nothing else.
"""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ._context import web_context
from ._render import page, render

__all__ = ["routes"]


@page
async def periodic(request: Request) -> Response:
    """The periodic declarations, by name."""
    now = dt.datetime.now(dt.UTC)
    found = await web_context(request).scheduler.list_periodic(now)
    return render(request, "periodic.html", {"periodic": found, "now": now}, nav="periodic")


def routes() -> list[BaseRoute]:
    """The page's route, mounted at the app's root."""
    return [Route("/periodic", periodic, name="periodic")]
