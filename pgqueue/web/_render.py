"""What every dashboard page shares: rendering with the layout's context, links, error pages.

Links are paths, never absolute URLs: an absolute URL names the scheme and host the app
saw, which behind a TLS-terminating proxy is ``http://`` and breaks the stylesheet. A path
is the app's own route (looked up on the innermost app, so names need no prefix when the
dashboard is mounted inside another Starlette app) under the ASGI ``root_path``.

Values reach the HTML only through the templates, whose environment autoescapes ``.html``
files (``select_autoescape``, set by ``Jinja2Templates``); the helpers here return plain
strings and let the template escape them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response

from pgqueue._errors import ConfigError, DatabaseUnavailableError, InvalidStateError, JobNotFound, SchemaError
from pgqueue._models import Outcome

from ._context import web_context

__all__ = [
    "MAX_JOB_ID",
    "PREVIEW_CHARS",
    "BadRequest",
    "JsonBlock",
    "error_page",
    "jobs_href",
    "json_block",
    "page",
    "path_for",
    "render",
]

PREVIEW_CHARS = 2048  # params, results and checkpoints longer than this show a preview and a link
MAX_JOB_ID = 2**63 - 1  # a bigint: a larger id in a URL is a bad request, not a database error
_LINE_CHARS = 200  # a one-line summary of an error text

_NAV = (
    ("overview", "Overview"),
    ("jobs", "Jobs"),
    ("workers", "Workers"),
    ("types", "Types"),
    ("periodic", "Periodic"),
)

_OUTCOME_CLASS = {
    Outcome.SUCCEEDED: "succeeded",
    Outcome.FAILED: "failed",
    Outcome.TIMEOUT: "failed",
    Outcome.CRASHED: "failed",
    Outcome.CANCELLED: "cancelled",
    Outcome.INTERRUPTED: "scheduled",
    Outcome.SNOOZED: "scheduled",
    Outcome.SUSPENDED: "suspended",
}

_REASONS = {400: "Bad request", 403: "Forbidden", 404: "Not found", 409: "Conflict", 503: "Unavailable"}


class BadRequest(Exception):  # noqa: N818 - named after the status it answers
    """A request the pages cannot serve as asked (a malformed id, filter or form): a 400 page."""


def path_for(request: Request, name: str, /, **params: object) -> str:
    """The path of this app's route ``name``, under the root path the app is mounted at."""
    root: str = request.scope.get("root_path", "")
    return root + str(request.app.url_path_for(name, **params))


def jobs_href(request: Request, /, **query: object) -> str:
    """The job list's path with the given filters (None and empty values left out)."""
    given = {k: str(v) for k, v in query.items() if v is not None and v != ""}
    path = path_for(request, "jobs")
    return f"{path}?{urlencode(given)}" if given else path


def fmt_time(at: dt.datetime) -> str:
    """A time in UTC, to the second: what the tables show (the tooltip has the full ISO form)."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def span(seconds: float) -> str:
    """A duration for people: ``850 ms``, ``4.2 s``, ``3 min 20 s``, ``2 h 5 min``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:  # noqa: PLR2004 - a minute
        return f"{seconds:.1f} s"
    if seconds < 3600:  # noqa: PLR2004 - an hour
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def took(started: dt.datetime, finished: dt.datetime) -> str:
    return span(max(0.0, (finished - started).total_seconds()))


def ago(at: dt.datetime) -> str:
    """How long ago, by this process's clock (display only: nothing is decided on it)."""
    return span(max(0.0, (dt.datetime.now(dt.UTC) - at).total_seconds())) + " ago"


def summary(text: str | None) -> str:
    """The line of an error text that says what went wrong, cut to a summary's length.

    A Python traceback ends with the exception (``RuntimeError: ...``), after indented
    frames: its last unindented line. Any other text (a cancel's reason) starts with it.
    """
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[0]
    if line.startswith("Traceback (most recent call last)"):
        line = next((ln for ln in reversed(lines) if not ln[0].isspace()), line)
    return line if len(line) <= _LINE_CHARS else line[: _LINE_CHARS - 1] + "…"


def pretty(value: object) -> str:
    """Indented JSON (params are decoded JSON; ``default=str`` covers a stray non-JSON value)."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()


def log_time(at: dt.datetime) -> str:
    """A log line's time in UTC, to the millisecond (lines of one run are often that close)."""
    return at.astimezone(dt.UTC).strftime("%H:%M:%S.%f")[:-3]


def log_fields(fields: dict[str, Any]) -> str:
    """A log line's fields as ``key=<JSON>`` pairs, whole (the run's log is capped already)."""
    return " ".join(f"{k}={orjson.dumps(v, default=str).decode()}" for k, v in fields.items())


def short_json(value: object) -> str:
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= _LINE_CHARS else text[: _LINE_CHARS - 1] + "…"


@dataclasses.dataclass(frozen=True, slots=True)
class JsonBlock:
    """A JSON value as the job page shows it: indented, and cut to a preview when long."""

    text: str
    """What the page shows: all of it, or the first ``PREVIEW_CHARS`` characters."""
    size: int
    """Characters of the whole indented text."""
    truncated: bool
    """Whether ``text`` is a preview; ``href`` then serves the whole value."""
    href: str
    """The path of the whole value as JSON."""


def json_block(value: object, href: str) -> JsonBlock:
    text = pretty(value)
    if len(text) <= PREVIEW_CHARS:
        return JsonBlock(text, len(text), truncated=False, href=href)
    return JsonBlock(text[:PREVIEW_CHARS], len(text), truncated=True, href=href)


def render(
    request: Request, template: str, context: dict[str, Any], *, nav: str | None, status_code: int = 200
) -> Response:
    """The page ``template`` in the shared layout; never cached (live data and CSRF tokens)."""
    ctx = web_context(request)
    common: dict[str, Any] = {
        "request": request,
        "app_title": ctx.title,
        "read_only": ctx.read_only,
        "has_token": ctx.token is not None,
        "nav": nav,
        "nav_items": _NAV,
        "path_for": functools.partial(path_for, request),
        "jobs_href": functools.partial(jobs_href, request),
        "fmt_time": fmt_time,
        "took": took,
        "ago": ago,
        "summary": summary,
        "pretty": pretty,
        "short_json": short_json,
        "log_time": log_time,
        "log_fields": log_fields,
        "outcome_class": lambda outcome: _OUTCOME_CLASS.get(outcome, "cancelled"),
    }
    return ctx.templates.TemplateResponse(
        request,
        template,
        {**common, **context},
        status_code=status_code,
        headers={"Cache-Control": "no-store"},
    )


def error_page(request: Request, status: int, message: str) -> Response:
    """An error in the layout: what went wrong, in words, and the way back."""
    context = {"status": status, "reason": _REASONS.get(status, "Error"), "message": message}
    return render(request, "error.html", context, nav=None, status_code=status)


Handler = Callable[[Request], Awaitable[Response]]


def page(handler: Handler) -> Handler:
    """Turn what pgqueue raises for a request into the page it deserves, never a 500.

    A malformed request (``BadRequest``, or a value pgqueue refuses: ``ConfigError``) is a
    400, an unknown job a 404, a state that forbids the action a 409, a database that does
    not answer (or whose schema does not match this pgqueue) a 503.
    """

    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except (BadRequest, ConfigError) as exc:
            return error_page(request, 400, str(exc))
        except JobNotFound as exc:
            return error_page(request, 404, str(exc))
        except InvalidStateError as exc:
            return error_page(request, 409, str(exc))
        except DatabaseUnavailableError as exc:
            return error_page(request, 503, f"The database does not answer: {exc}")
        except SchemaError as exc:
            return error_page(request, 503, str(exc))

    return guarded
