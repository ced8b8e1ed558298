"""The dashboard's HTML pages: overview, jobs (``pages_jobs.py``), workers, job types.

Server-rendered with Jinja2, plain links and forms: no script runs on any page (the CSP
forbids inline script, and nothing here needs one). Every action is a POST form carrying
the CSRF field, answered with a 303 back to a page, so a reload never repeats it. Pages
read the Scheduler's public API only; each page costs a few management queries and
nothing on the workers' path.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from pgqueue._records import JobState

from . import pages_jobs, pages_periodic
from ._charts import Series, bar_chart, bucket_words
from ._context import web_context
from ._render import BadRequest, page, render

__all__ = ["STATIC_DIR", "WINDOWS", "routes"]

STATIC_DIR = Path(__file__).parent / "static"

WINDOWS: dict[str, tuple[float, float]] = {
    "1h": (3600.0, 60.0),
    "6h": (6 * 3600.0, 300.0),
    "24h": (24 * 3600.0, 1200.0),
}
"""The overview's activity windows: name → (window seconds, bucket seconds); 60 to 72 bars."""
_DEFAULT_WINDOW = "1h"
_WINDOW_WORDS = {"1h": "in the last hour", "6h": "in the last 6 hours", "24h": "in the last 24 hours"}

_SUCCEEDED, _RETRIED, _FAILED, _CANCELLED = "#2e7d32", "#f0a202", "#c62828", "#9ca3af"


@dataclasses.dataclass(frozen=True, slots=True)
class QueueRow:
    """One queue of the overview: live counts now, finished counts over the window."""

    name: str
    pending: int
    scheduled: int
    running: int
    suspended: int
    waiting: int
    succeeded: int
    retried: int
    failed: int
    cancelled: int


@page
async def overview(request: Request) -> Response:
    """Per queue, live and recent counts; throughput and failures over the window as charts."""
    window = request.query_params.get("window", _DEFAULT_WINDOW)
    if window not in WINDOWS:
        raise BadRequest(f"unknown window {window!r}: choose one of {', '.join(WINDOWS)}")
    window_s, bucket_s = WINDOWS[window]
    scheduler = web_context(request).scheduler
    stats = await scheduler.stats()
    activity = await scheduler.activity(window_s=window_s, bucket_s=bucket_s)
    rows = []
    for name in sorted(set(stats.by_queue) | set(activity.by_queue)):
        live = stats.by_queue.get(name, {})
        done = activity.by_queue.get(name)
        rows.append(
            QueueRow(
                name=name,
                pending=live.get(JobState.PENDING, 0),
                scheduled=live.get(JobState.SCHEDULED, 0),
                running=live.get(JobState.RUNNING, 0),
                suspended=live.get(JobState.SUSPENDED, 0),
                waiting=live.get(JobState.WAITING, 0),
                succeeded=done.succeeded if done else 0,
                retried=done.retried if done else 0,
                failed=done.failed if done else 0,
                cancelled=done.cancelled if done else 0,
            )
        )
    starts = [b.start for b in activity.buckets]
    counts = [b.counts for b in activity.buckets]
    per = bucket_words(activity.bucket_s)
    throughput = bar_chart(
        chart_id="throughput-chart",
        title=f"Runs finished per {per}",
        starts=starts,
        bucket_s=activity.bucket_s,
        series=[
            Series("succeeded", _SUCCEEDED, [c.succeeded for c in counts]),
            Series("retried", _RETRIED, [c.retried for c in counts]),
            Series("failed", _FAILED, [c.failed for c in counts]),
            Series("cancelled", _CANCELLED, [c.cancelled for c in counts]),
        ],
        y_label="runs",
    )
    failures = bar_chart(
        chart_id="failures-chart",
        title=f"Failed runs per {per}",
        starts=starts,
        bucket_s=activity.bucket_s,
        series=[
            Series("failed for good", _FAILED, [c.failed for c in counts]),
            Series("failed, retried", _RETRIED, [c.retried for c in counts]),
        ],
        y_label="failed runs",
    )
    context = {
        "queues": rows,
        "activity": activity,
        "throughput_chart": throughput,
        "failures_chart": failures,
        "window": window,
        "default_window": _DEFAULT_WINDOW,
        "windows": [(key, key) for key in WINDOWS],
        "window_words": _WINDOW_WORDS[window],
        "window_short": window,
    }
    return render(request, "overview.html", context, nav="overview")


@page
async def workers(request: Request) -> Response:
    """The registered workers, the jobs each holds, and how long ago each one last reported."""
    found = await web_context(request).scheduler.list_workers()
    context = {"workers": found, "now": dt.datetime.now(dt.UTC)}
    return render(request, "workers.html", context, nav="workers")


@page
async def types(request: Request) -> Response:
    """The job types this app's scheduler registered, with their params JSON Schema."""
    described = web_context(request).scheduler.job_types()
    return render(request, "types.html", {"types": described}, nav="types")


def routes() -> list[BaseRoute]:
    """The page routes and the stylesheet, mounted at the app's root."""
    return [
        Route("/", overview, name="overview"),
        *pages_jobs.routes(),
        Route("/workers", workers, name="workers"),
        Route("/types", types, name="types"),
        *pages_periodic.routes(),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
