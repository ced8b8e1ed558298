"""The job pages: the filtered list with bulk retry, one job's detail, and its actions.

An action is a POST to ``/jobs/{id}/{action}``, checked for CSRF and read-only by the
guard. Success answers 303 back to the job with ``?done=<what happened>``; the page maps
that word to a fixed sentence, so nothing a link carries is ever shown as text. A refusal
renders the job page with the reason and status 409, so the person sees the state that
refused it.
"""

from __future__ import annotations

from typing import Final

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from pgqueue import _bulk
from pgqueue._errors import InvalidStateError
from pgqueue._models import CancelResult
from pgqueue._records import JobRecord, JobState
from pgqueue._scheduler import Scheduler

from ._context import web_context
from ._render import (
    MAX_JOB_ID,
    BadRequest,
    error_page,
    jobs_href,
    json_block,
    page,
    path_for,
    render,
)

__all__ = ["PAGE_SIZE", "actions_for", "routes"]

PAGE_SIZE = 50  # jobs per page of the list
_MAX_LIMIT = 500  # list_jobs' own ceiling
_STATES = tuple(s.value for s in JobState)
_DATA_FIELDS = frozenset({"params", "result", "checkpoint"})

_DONE: Final = {
    "cancel": "Cancelled.",
    "cancelling": "Cancel requested: the worker running the job stops it and records it as cancelled.",
    "retry": "Put back in its queue, due now.",
    "suspend": "Suspended: out of the queue until resumed.",
    "suspend_requested": "Suspend requested: the running job stops at its next checkpoint.",
    "resume": "Resumed: back in its queue.",
}


def _job_id(request: Request) -> int:
    text: str = request.path_params["job_id"]
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= MAX_JOB_ID:
        raise BadRequest(f"job id must be a positive integer, got {text!r}")
    return int(text)


def _filter(request: Request, name: str) -> str | None:
    value = request.query_params.get(name, "").strip()
    return value or None


def _limit(request: Request) -> int | None:
    """``?limit=`` (1 to 500) when given; None for the default page size."""
    text = request.query_params.get("limit")
    if text is None or text == "":
        return None
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= _MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {_MAX_LIMIT}, got {text!r}")
    return int(text)


def _count(text: str | None) -> int | None:
    return int(text) if text is not None and text.isascii() and text.isdigit() and len(text) < 10 else None  # noqa: PLR2004 - a count, not a number to overflow on


@page
async def jobs(request: Request) -> Response:
    """The job list: filters, one page newest first, a link to the next, bulk retry."""
    ctx = web_context(request)
    state, queue, type_ = _filter(request, "state"), _filter(request, "queue"), _filter(request, "type")
    tenant, cursor, limit = _filter(request, "tenant"), _filter(request, "cursor"), _limit(request)
    if state is not None and state not in _STATES:
        raise BadRequest(f"unknown job state {state!r} (states: {', '.join(_STATES)})")
    found = await ctx.scheduler.list_jobs(
        state=state, queue=queue, type=type_, limit=limit or PAGE_SIZE, cursor=cursor, tenant=tenant
    )
    described = ctx.scheduler.job_types()
    flash = None
    retried = _count(request.query_params.get("retried"))
    if retried is not None:
        flash = f"Retried {retried} failed job{'' if retried == 1 else 's'}: back in their queues, due now."
    deleted = _count(request.query_params.get("deleted"))
    if deleted is not None:
        flash = f"Job {deleted} deleted."
    context = {
        "page": found,
        "filters": {
            "state": state,
            "queue": queue,
            "type": type_,
            "tenant": tenant,
            "cursor": cursor,
            "limit": limit,
        },
        "states": _STATES,
        "known_queues": sorted({t.queue for t in described}),
        "known_types": [t.name for t in described],
        # Bulk retry filters by queue and type only: offered under a tenant filter, it would
        # retry the failed jobs of every tenant.
        "show_bulk_retry": not ctx.read_only and tenant is None and state in {None, JobState.FAILED.value},
        "flash": flash,
    }
    return render(request, "jobs.html", context, nav="jobs")


@page
async def retry_failed(request: Request) -> Response:
    """Bulk retry: every failed job of the form's queue and type (in chunks); back to the list."""
    ctx = web_context(request)
    if ctx.read_only:
        return error_page(request, 403, "this dashboard is read-only")
    async with request.form(max_files=0) as form:
        fields = {k: form.get(k) for k in ("queue", "type")}
    queue, type_ = (v.strip() or None if isinstance(v, str) else None for v in fields.values())
    ids = await _bulk.retry_failed(ctx.scheduler, queue=queue, type_=type_)
    return RedirectResponse(jobs_href(request, queue=queue, type=type_, retried=len(ids)), status_code=303)


def actions_for(job: JobRecord, suspendable: set[str]) -> list[tuple[str, str, str]]:
    """The actions that make sense in the job's state: (action, button label, CSS class).

    A running job is suspendable only when its type, as this app's scheduler registered
    it, says so (the dashboard without ``--app`` knows no types, and offers none).
    """
    state = job.state
    out: list[tuple[str, str, str]] = []
    if state in {JobState.PENDING, JobState.SCHEDULED} or (
        state is JobState.RUNNING and job.type in suspendable and not job.suspend_requested
    ):
        out.append(("suspend", "Suspend", ""))
    if state is JobState.SUSPENDED:
        out.append(("resume", "Resume", "primary"))
    if state in {JobState.FAILED, JobState.CANCELLED}:
        out.append(("retry", "Retry", "primary"))
    if not state.finished:
        out.append(("cancel", "Cancel", "danger"))
    if state in {JobState.PENDING, JobState.SCHEDULED, JobState.SUSPENDED, JobState.WAITING}:
        out.append(("delete", "Delete", "danger"))
    return out


def _job_page(
    request: Request, job: JobRecord, *, flash: str | None, error: str | None, status: int
) -> Response:
    ctx = web_context(request)
    suspendable = {t.name for t in ctx.scheduler.job_types() if t.suspendable}

    def data_href(field: str) -> str:
        return path_for(request, "job_data", job_id=job.id, field=field)

    context = {
        "job": job,
        "actions": [] if ctx.read_only else actions_for(job, suspendable),
        "params": json_block(job.params, data_href("params")),
        "result": None if job.result is None else json_block(job.result, data_href("result")),
        "checkpoint": None if job.checkpoint is None else json_block(job.checkpoint, data_href("checkpoint")),
        "flash": flash,
        "error": error,
    }
    return render(request, "job.html", context, nav="jobs", status_code=status)


@page
async def job(request: Request) -> Response:
    """One job: its fields, params, result, progress, runs, and the actions its state allows."""
    record = await web_context(request).scheduler.get_job(_job_id(request))
    flash = _DONE.get(request.query_params.get("done", ""))
    return _job_page(request, record, flash=flash, error=None, status=200)


@page
async def job_data(request: Request) -> Response:
    """The whole params, result or checkpoint of a job as JSON (the page shows a preview)."""
    field: str = request.path_params["field"]
    if field not in _DATA_FIELDS:
        return error_page(request, 404, f"a job has no {field!r} to show: params, result or checkpoint")
    record = await web_context(request).scheduler.get_job(_job_id(request))
    body = orjson.dumps(getattr(record, field), option=orjson.OPT_INDENT_2, default=str)
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})


async def _act(scheduler: Scheduler, action: str, job_id: int) -> str:
    """Do ``action``; the ``done`` word for the page (InvalidStateError when refused)."""
    if action == "cancel":
        outcome = await scheduler.cancel(job_id)
        if outcome is CancelResult.NOT_FOUND:  # ended already, or unknown: say which
            record = await scheduler.get_job(job_id)
            raise InvalidStateError(job_id, record.state.value, "cancel")
        return "cancelling" if outcome is CancelResult.CANCELLING else "cancel"
    if action == "suspend":
        await scheduler.suspend(job_id)
        running = (await scheduler.get_job(job_id)).state is JobState.RUNNING
        return "suspend_requested" if running else "suspend"
    calls = {"retry": scheduler.retry, "resume": scheduler.resume, "delete": scheduler.delete}
    await calls[action](job_id)
    return action


@page
async def job_action(request: Request) -> Response:
    """Cancel, retry, delete, suspend or resume one job, then 303 back to it (or to the list)."""
    ctx = web_context(request)
    action: str = request.path_params["action"]
    if action not in {"cancel", "retry", "delete", "suspend", "resume"}:
        return error_page(request, 404, f"no action {action!r}: cancel, retry, delete, suspend or resume")
    if ctx.read_only:
        return error_page(request, 403, "this dashboard is read-only")
    job_id = _job_id(request)
    try:
        done = await _act(ctx.scheduler, action, job_id)
    except InvalidStateError as exc:
        record = await ctx.scheduler.get_job(job_id)
        return _job_page(request, record, flash=None, error=str(exc), status=409)
    if done == "delete":  # a deleted job may be gone for good: the list says it went
        return RedirectResponse(jobs_href(request, deleted=job_id), status_code=303)
    target = path_for(request, "job", job_id=job_id) + "?done=" + done
    return RedirectResponse(target, status_code=303)


def routes() -> list[BaseRoute]:
    """``/jobs``, ``/jobs/retry``, ``/jobs/{id}``, its data and its actions."""
    return [
        Route("/jobs", jobs, name="jobs"),
        Route("/jobs/retry", retry_failed, methods=["POST"], name="jobs_retry"),
        Route("/jobs/{job_id}", job, name="job"),
        Route("/jobs/{job_id}/data/{field}", job_data, name="job_data"),
        Route("/jobs/{job_id}/{action}", job_action, methods=["POST"], name="job_action"),
    ]
