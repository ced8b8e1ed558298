"""What every route of one dashboard app reads: :class:`WebContext`, set once by ``create_app``.

A module of its own so that routes (``api.py``, the pages) can import it while ``app.py``
imports them.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection
    from starlette.templating import Jinja2Templates

    from pgqueue._scheduler import Scheduler

__all__ = ["WebContext", "web_context"]


@dataclasses.dataclass(frozen=True, slots=True)
class WebContext:
    """The app's settings and shared objects; frozen, so no request can change another's view."""

    scheduler: Scheduler
    """The open Scheduler the app reads and acts through (its public API only)."""
    token: str | None
    """The access token every request must carry; None: the app is open (loopback only)."""
    read_only: bool
    """Refuse every action (POST, PUT, PATCH, DELETE) with 403."""
    title: str
    """The name the pages show."""
    templates: Jinja2Templates
    """The pages' templates; ``csrf_token(request)`` is a global in them."""
    csrf_secret: bytes = dataclasses.field(repr=False)
    """This process's random key for CSRF tokens (see ``_security.py``)."""


def web_context(conn: HTTPConnection) -> WebContext:
    """The context of the app serving this request (the innermost one when apps nest)."""
    ctx: WebContext = conn.app.state.pgqueue
    return ctx
