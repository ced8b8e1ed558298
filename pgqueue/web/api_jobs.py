"""The API's job routes: list, look up, schedule, act on one job, act in bulk.

Request bodies are JSON objects read strictly: an unknown field, a value of the wrong type
or malformed JSON is a 400 naming it, before the Scheduler is called, so a typo never
schedules a job with a default. Scheduling goes through the app's own Scheduler: a type it
registered is checked by its params model (a 400 lists the problems); a type it did not
register is a 400, as ``schedule()`` refuses it (``pgqueue schedule`` without ``--app``
registers the type on the fly instead, but a dashboard serves one application, and a typo
in a type name would otherwise queue jobs no worker runs).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING, Any

import orjson
from starlette.routing import BaseRoute, Route

from pgqueue._bulk import retry_failed
from pgqueue._errors import MAX_DELAY_S
from pgqueue._jsonable import job_json

from ._context import web_context
from ._responses import ApiError, json_response

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["MAX_BODY_BYTES", "MAX_LIMIT", "routes"]

MAX_LIMIT = 500  # list_jobs' largest page
MAX_BODY_BYTES = 1 << 20  # a job's params fit; a larger body is refused before it is parsed
_MAX_ID = 2**63 - 1  # a bigint: a larger id is a bad request, never a database error
_ACTIONS = ("cancel", "retry", "suspend", "resume")
_SCHEDULE_FIELDS = frozenset(
    {"type", "params", "queue", "run_at", "delay_s", "priority", "unique_key", "tenant"}
)
_FILTER_FIELDS = frozenset({"queue", "type"})


def _bad(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def _job_id(request: Request) -> int:
    text: str = request.path_params["job_id"]
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= _MAX_ID:
        raise _bad(f"a job id is an integer from 1 to {_MAX_ID}, got {text!r}")
    return int(text)


def _limit(request: Request) -> int:
    text = request.query_params.get("limit")
    if text is None:
        return 50
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise _bad(f"limit must be an integer from 1 to {MAX_LIMIT}, got {text!r}")
    return int(text)


def _check_declared_length(request: Request) -> None:
    """400 for a Content-Length that is no number (bad input, not a bug); 413 past the limit."""
    declared = request.headers.get("content-length") or "0"
    if not declared.isascii() or not declared.isdigit():
        raise _bad(f"Content-Length must be a number of bytes, got {declared[:40]!r}")
    digits = declared.lstrip("0")  # int() refuses strings past 4300 digits, zeros included
    if len(digits) > len(str(MAX_BODY_BYTES)) or int(digits or "0") > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"the body must be at most {MAX_BODY_BYTES} bytes")


async def _body(request: Request, fields: frozenset[str], *, required: bool) -> dict[str, Any]:
    """The JSON object in the body (``{}`` for an empty body unless ``required``); 400/413/415 else."""
    _check_declared_length(request)
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, "too_large", f"the body must be at most {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        if required:
            raise _bad("a JSON object body is required")
        return {}
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as Content-Type: application/json")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise _bad(f"the body must be a JSON object, got {type(value).__name__}")
    unknown = sorted(set(value) - fields)
    if unknown:
        raise _bad(f"unknown field(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(fields))}")
    return value


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise _bad(f"{name} must be a string or null, got {type(value).__name__}")
    return value


def _when(body: dict[str, Any]) -> dt.datetime | dt.timedelta | None:
    """``run_at`` (ISO 8601 with an offset) or ``delay_s`` (seconds from now), not both."""
    run_at, delay_s = body.get("run_at"), body.get("delay_s")
    if run_at is not None and delay_s is not None:
        raise _bad("give run_at or delay_s, not both")
    if run_at is not None:
        if not isinstance(run_at, str):
            raise _bad("run_at must be an ISO 8601 string with an offset")
        try:
            when = dt.datetime.fromisoformat(run_at)
        except ValueError:
            raise _bad(f"run_at must be an ISO 8601 time with an offset, got {run_at!r}") from None
        if when.tzinfo is None:
            raise _bad(f"run_at must carry its UTC offset (like +00:00 or Z), got {run_at!r}")
        return when
    if delay_s is not None:
        if isinstance(delay_s, bool) or not isinstance(delay_s, int | float):
            raise _bad("delay_s must be a number of seconds")
        if not (math.isfinite(delay_s) and 0 <= delay_s <= MAX_DELAY_S):
            raise _bad(f"delay_s must be between 0 and {MAX_DELAY_S:.0f} seconds, got {delay_s!r}")
        return dt.timedelta(seconds=delay_s)
    return None


async def list_jobs(request: Request) -> Response:
    """One page of jobs, newest first; ``cursor`` continues where the last page stopped."""
    q = request.query_params
    page = await web_context(request).scheduler.list_jobs(
        state=q.get("state"),
        queue=q.get("queue"),
        type=q.get("type"),
        limit=_limit(request),
        cursor=q.get("cursor"),
        tenant=q.get("tenant"),
    )
    return json_response({"items": [job_json(r) for r in page.items], "cursor": page.cursor})


async def get_job(request: Request) -> Response:
    """One job, live or finished, with its runs."""
    return json_response(job_json(await web_context(request).scheduler.get_job(_job_id(request))))


async def schedule(request: Request) -> Response:
    """Schedule one job: 201 with its id, or 200 with the id of the job holding its unique key."""
    body = await _body(request, _SCHEDULE_FIELDS, required=True)
    type_ = body.get("type")
    if not isinstance(type_, str):
        raise _bad("type (a string) is required")
    priority = body.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise _bad(f"priority must be an integer, got {priority!r}")
    job_id = await web_context(request).scheduler.schedule(
        type_,
        body.get("params"),
        queue=_optional_str(body, "queue"),
        run_at=_when(body),
        priority=priority,
        unique_key=_optional_str(body, "unique_key"),
        tenant=_optional_str(body, "tenant"),
    )
    return json_response({"id": int(job_id), "inserted": job_id.inserted}, 201 if job_id.inserted else 200)


async def act(request: Request) -> Response:
    """cancel, retry, suspend or resume one job (409 when its state forbids it)."""
    job_id = _job_id(request)
    action: str = request.path_params["action"]
    if action not in _ACTIONS:
        raise ApiError(404, "not_found", f"no action {action!r}; actions: {', '.join(_ACTIONS)}")
    await _body(request, frozenset(), required=False)
    scheduler = web_context(request).scheduler
    outcome = "done"
    if action == "cancel":
        outcome = (await scheduler.cancel(job_id)).value
        if outcome == "not_found":
            # A finished job is no longer live: 409 names its state; an unknown id raises 404.
            state = (await scheduler.get_job(job_id)).state.value
            raise ApiError(409, "invalid_state", f"cannot cancel job {job_id}: job {job_id} is {state}")
    else:
        await getattr(scheduler, action)(job_id)
    return json_response({"id": job_id, "action": action, "outcome": outcome})


async def delete(request: Request) -> Response:
    """Remove a pending, scheduled or suspended job (its logged runs stay)."""
    job_id = _job_id(request)
    await web_context(request).scheduler.delete(job_id)
    return json_response({"id": job_id, "action": "delete", "outcome": "done"})


async def retry_many(request: Request) -> Response:
    """Run every failed job of ``queue`` and/or ``type`` (or all of them) again, in chunks."""
    body = await _body(request, _FILTER_FIELDS, required=False)
    ids = await retry_failed(
        web_context(request).scheduler, queue=_optional_str(body, "queue"), type_=_optional_str(body, "type")
    )
    return json_response({"ids": ids, "count": len(ids)})


async def cancel_many(request: Request) -> Response:
    """Cancel every live job of ``queue`` and/or ``type`` (one filter at least)."""
    body = await _body(request, _FILTER_FIELDS, required=False)
    counts = await web_context(request).scheduler.cancel_many(
        queue=_optional_str(body, "queue"), type=_optional_str(body, "type")
    )
    return json_response({"cancelled": counts.cancelled, "cancelling": counts.cancelling})


def routes() -> list[BaseRoute]:
    """The job routes, relative to ``/api`` (the bulk ones before ``/jobs/{job_id}``)."""
    return [
        Route("/jobs", list_jobs, methods=["GET"], name="list_jobs"),
        Route("/jobs", schedule, methods=["POST"], name="schedule"),
        Route("/jobs/retry", retry_many, methods=["POST"], name="retry_many"),
        Route("/jobs/cancel", cancel_many, methods=["POST"], name="cancel_many"),
        Route("/jobs/{job_id}", get_job, methods=["GET"], name="get_job"),
        Route("/jobs/{job_id}", delete, methods=["DELETE"], name="delete_job"),
        Route("/jobs/{job_id}/{action}", act, methods=["POST"], name="act"),
    ]
