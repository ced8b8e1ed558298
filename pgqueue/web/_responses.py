"""Responses every part of the dashboard shares: JSON, the API's error shape, bare error pages.

The API answers every error as ``{"error": "<code>", "message": "..."}`` with a status
that says whose fault it is; :func:`error_for` is the one table from pgqueue's exceptions
to those. A message may quote the request (a ``<script>`` in a queue name): the API only
ever sends it as JSON string data (``application/json``, ``nosniff``), and the HTML side
escapes it.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Final

import orjson
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response

from pgqueue._errors import (
    ConfigError,
    DatabaseUnavailableError,
    InvalidStateError,
    JobNotFound,
    ParamsEncodeError,
    SchemaError,
    UnknownJobTypeError,
    WorkerHasActiveJobs,
    WorkerNotFound,
)
from pgqueue._params import ParamsValidationError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.types import ExceptionHandler

__all__ = [
    "API_SCOPE_KEY",
    "SECURITY_HEADERS",
    "ApiError",
    "error_for",
    "exception_handlers",
    "html_error",
    "is_api_path",
    "json_error",
    "json_response",
]

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
"""Sent with every response (``SecurityHeaders``); a 500 sets them itself (see below)."""

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


_ERROR_TABLE: tuple[tuple[tuple[type[Exception], ...], int, str], ...] = (
    ((JobNotFound, WorkerNotFound), 404, "not_found"),
    ((InvalidStateError,), 409, "invalid_state"),
    ((WorkerHasActiveJobs,), 409, "has_active_jobs"),
    ((ParamsValidationError, ParamsEncodeError), 400, "invalid_params"),
    ((UnknownJobTypeError,), 400, "unknown_type"),
    ((ConfigError,), 400, "bad_request"),
    ((DatabaseUnavailableError,), 503, "unavailable"),
    ((SchemaError,), 503, "schema"),
)
"""pgqueue's errors as API errors, the first match winning (subclasses before ConfigError)."""


class ApiError(Exception):
    """A request the API refuses: raised by a route, answered as its JSON error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def json_response(value: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``value`` as JSON (orjson: datetimes in ISO 8601 with their offset)."""
    return Response(orjson.dumps(value), status_code=status, media_type="application/json", headers=headers)


def json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """The API's error shape: always JSON, never HTML."""
    return json_response({"error": code, "message": message}, status, headers)


def html_error(status: int, title: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """A bare error page for the HTML side (escaped: the message may quote the request)."""
    t, m = html.escape(title), html.escape(message)
    head = f"<!doctype html><html><head><meta charset=utf-8><title>{t}</title></head>"
    return HTMLResponse(
        f"{head}<body><h1>{t}</h1><p>{m}</p></body></html>", status_code=status, headers=headers
    )


def error_for(exc: Exception) -> ApiError | None:
    """The API error for what a route raised; None for a bug (answered as a 500).

    Bad input is a 400 whatever layer found it; an unknown job or worker a 404; a state
    that forbids the action, or a worker that still holds jobs, a 409; a database that
    cannot be reached, or a schema that does not match this pgqueue, a 503 (nothing was
    written either way).
    """
    if isinstance(exc, ApiError):
        return exc
    for kinds, status, code in _ERROR_TABLE:
        if isinstance(exc, kinds):
            return ApiError(status, code, str(exc))
    return None


API_SCOPE_KEY: Final = "pgqueue.api"
"""Set in the scope by the guard: whether the request is for the API (``/api`` in this app)."""


def is_api_path(request: Request) -> bool:
    """Whether the request is for the API: the guard decided it, on the path inside this app.

    Read from the scope because a route's own scope has the API's mount point in its root
    path already, where ``/api/jobs`` looks like ``/jobs``.
    """
    return bool(request.scope.get(API_SCOPE_KEY, False))


async def _on_error(request: Request, exc: Exception) -> Response:
    """Answer pgqueue's errors and ``ApiError`` out of any route: JSON for the API, a page otherwise."""
    error = error_for(exc)
    if error is None:
        raise exc
    if is_api_path(request):
        return json_error(error.status, error.code, error.message)
    return html_error(error.status, error.code.replace("_", " ").capitalize(), error.message)


async def _on_http(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method), in the API's shape on the API."""
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
    headers = dict(exc.headers or {})
    if is_api_path(request):
        code = _HTTP_CODES.get(exc.status_code, "error")
        return json_error(exc.status_code, code, str(exc.detail), headers)
    return html_error(exc.status_code, str(exc.detail), str(exc.detail), headers)


async def _on_crash(request: Request, exc: Exception) -> Response:
    """A bug: a bare 500 (never the traceback), with the security headers set here.

    Starlette answers a 500 outside every middleware, where ``SecurityHeaders`` cannot add them.
    """
    del exc  # logged by Starlette's ServerErrorMiddleware, which re-raises it
    if is_api_path(request):
        return json_error(500, "internal", "internal error", dict(SECURITY_HEADERS))
    return html_error(500, "Internal error", "Something went wrong.", dict(SECURITY_HEADERS))


def exception_handlers() -> dict[type[Exception] | int, ExceptionHandler]:
    """The app's handlers: pgqueue errors, Starlette's HTTP errors, and the last-resort 500."""
    return {
        Exception: _on_crash,
        HTTPException: _on_http,
        ApiError: _on_error,
        ConfigError: _on_error,
        JobNotFound: _on_error,
        InvalidStateError: _on_error,
        UnknownJobTypeError: _on_error,
        ParamsValidationError: _on_error,
        ParamsEncodeError: _on_error,
        DatabaseUnavailableError: _on_error,
        SchemaError: _on_error,
        WorkerNotFound: _on_error,
        WorkerHasActiveJobs: _on_error,
    }
