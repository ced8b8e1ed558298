"""The dashboard's JSON API, mounted at ``/api``: what the pages show, for scripts.

Read routes (stats, queues, types, workers, activity, the OpenAPI document) live here; the
job routes, which also act, in ``api_jobs.py``; removing a worker in ``api_workers.py``.
Every route goes through the Scheduler's public API and answers JSON (orjson: datetimes in
ISO 8601 with their offset) in the shapes of ``pgqueue ... --json``
(``pgqueue/_jsonable.py``). Errors are ``{"error", "message"}`` with the status table of
``_responses.error_for``; the guard in front (``_security.py``) answers 401, 403 and 415
before a route runs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from starlette.routing import BaseRoute, Route

from pgqueue._jsonable import (
    activity_counts_json,
    activity_json,
    job_type_json,
    state_counts_json,
    stats_json,
)
from pgqueue._jsonable import worker_json as _worker_json
from pgqueue.periodic.records import periodic_json

from . import api_jobs, api_pull, api_workers, openapi
from ._context import web_context
from ._responses import ApiError, json_response

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["DEFAULT_BUCKET_S", "DEFAULT_WINDOW_S", "query_float", "routes"]

DEFAULT_WINDOW_S = 3600.0  # activity and queue totals: the last hour ...
DEFAULT_BUCKET_S = 60.0  # ... by the minute
_QUEUE_BUCKETS = 60


def query_float(request: Request, name: str, default: float) -> float:
    """A finite number from the query string, or ``default`` when absent; else a 400."""
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ApiError(400, "bad_request", f"{name} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ApiError(400, "bad_request", f"{name} must be a finite number, got {text!r}")
    return value


async def stats(request: Request) -> Response:
    """Live jobs by queue and by type, per state (``?tenant=``: of that tenant only)."""
    tenant = request.query_params.get("tenant")
    return json_response(stats_json(await web_context(request).scheduler.stats(tenant=tenant)))


async def queues(request: Request) -> Response:
    """Per queue: live jobs by state now, and the runs that ended in the window."""
    scheduler = web_context(request).scheduler
    window_s = query_float(request, "window_s", DEFAULT_WINDOW_S)
    live = state_counts_json((await scheduler.stats()).by_queue)
    # Sixty buckets: aligned buckets cover the window less part of the oldest one, here 1/60 at most.
    activity = await scheduler.activity(window_s=window_s, bucket_s=window_s / _QUEUE_BUCKETS)
    names = sorted({*live, *activity.by_queue})
    empty_live = dict.fromkeys(("pending", "scheduled", "running", "suspended", "waiting"), 0)
    items = [
        {
            "name": name,
            "live": live.get(name, empty_live),
            "finished": activity_counts_json(activity.by_queue[name])
            if name in activity.by_queue
            else dict.fromkeys(("succeeded", "failed", "retried", "cancelled"), 0),
        }
        for name in names
    ]
    return json_response({"since": activity.since, "until": activity.until, "items": items})


async def types(request: Request) -> Response:
    """The job types the app's Scheduler registered, with their params JSON Schema."""
    return json_response([job_type_json(t) for t in web_context(request).scheduler.job_types()])


async def workers(request: Request) -> Response:
    """The registered workers, oldest first, with their concurrency, kind and jobs held."""
    return json_response([_worker_json(w) for w in await web_context(request).scheduler.list_workers()])


async def activity(request: Request) -> Response:
    """Runs that ended recently, per bucket and per queue (the overview's charts)."""
    window_s = query_float(request, "window_s", DEFAULT_WINDOW_S)
    bucket_s = query_float(request, "bucket_s", DEFAULT_BUCKET_S)
    found = await web_context(request).scheduler.activity(window_s=window_s, bucket_s=bucket_s)
    return json_response(activity_json(found))


async def periodic(request: Request) -> Response:
    """The periodic declarations with their next fire times and last outcomes."""
    return json_response([periodic_json(p) for p in await web_context(request).scheduler.list_periodic()])


async def openapi_document(request: Request) -> Response:
    """The API's OpenAPI 3.1 description (servers: the API's own path)."""
    root: str = request.scope.get("root_path", "")
    return json_response(openapi.document(server=root.removesuffix("/api") + "/api"))


def routes() -> list[BaseRoute]:
    """The API's routes, relative to ``/api`` (``openapi.py`` describes each; a test checks)."""
    return [
        *api_pull.routes(),  # the leases (api_pull.py); first: its /jobs/{job_id}/dequeue beats {action}
        *api_jobs.routes(),
        Route("/stats", stats, methods=["GET"], name="stats"),
        Route("/queues", queues, methods=["GET"], name="queues"),
        Route("/types", types, methods=["GET"], name="types"),
        Route("/workers", workers, methods=["GET"], name="workers"),
        *api_workers.routes(),
        Route("/activity", activity, methods=["GET"], name="activity"),
        Route("/periodic", periodic, methods=["GET"], name="periodic"),
        Route("/openapi.json", openapi_document, methods=["GET"], name="openapi"),
    ]
