"""The API's OpenAPI 3.1 document, written as data (served at ``/api/openapi.json``).

Written by hand rather than derived from the routes: the routes read their input by hand
too (strictly, see ``api_jobs.py``), so there is nothing to derive it from, and a test
checks that every route of the app is described here, with its methods, and the other way
round. Paths are relative to the one server, the API's own path.
"""

from __future__ import annotations

from typing import Any, Final

from ._openapi_pull import PULL_PATHS, PULL_SCHEMAS
from ._openapi_schemas import SCHEMAS, STATES, ref

__all__ = ["ERROR_STATUSES", "document"]

ERROR_STATUSES: Final = {
    "400": "Bad input: malformed JSON, a field of the wrong type, an unknown state, a limit out of range, "
    "a bad cursor, params the job type's model refuses, an unregistered job type.",
    "401": "A token is configured and the request does not carry it (Authorization: Bearer <token>).",
    "403": "The dashboard is read-only, or a cross-origin write.",
    "404": "No such job or worker (or route).",
    "409": "The job's state does not allow the action, or the worker to remove holds jobs "
    "(force releases them); for the pull API: lease_lost (the lease no longer holds its job), "
    "job_cancelled, not_pending.",
    "413": "The body is larger than 1 MiB.",
    "415": "A write without Content-Type: application/json.",
    "501": "The pull API on a scheduler whose backend cannot lease jobs (a custom backend).",
    "503": "The database cannot be reached, or its schema does not match this pgqueue; nothing was written.",
}
"""Every error status the API answers, and when."""

_READ_ERRORS = ("400", "401", "503")
_WRITE_ERRORS = ("400", "401", "403", "413", "415", "503")


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: str) -> dict[str, Any]:
    return {s: {"$ref": f"#/components/responses/E{s}"} for s in statuses}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
}
_WINDOW = _query(
    "window_s", {"type": "number", "exclusiveMinimum": 0, "default": 3600}, "Seconds back from now."
)


def _op(
    op_id: str,
    summary: str,
    ok: dict[str, Any],
    errors: tuple[str, ...],
    *,
    params: list[dict[str, Any]] | None = None,
    body: str | None = None,
    ok_status: str = "200",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "responses": {ok_status: ok, **(extra or {}), **_errors(*errors)},
    }
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {
            "required": body == "NewJob",
            "content": {"application/json": {"schema": ref(body)}},
        }
    return op


_PATHS: dict[str, Any] = {
    **PULL_PATHS,
    "/jobs": {
        "get": _op(
            "listJobs",
            "One page of jobs, newest first.",
            _json(ref("Page"), "A page; pass its cursor for the next one (null: the last page)."),
            _READ_ERRORS,
            params=[
                _query("state", {"enum": STATES}, "Only jobs in this state."),
                _query("queue", {"type": "string"}, "Only this queue."),
                _query("type", {"type": "string"}, "Only this job type."),
                _query("tenant", {"type": "string"}, "Only jobs scheduled with this tenant."),
                _query(
                    "limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "Page size."
                ),
                _query("cursor", {"type": "string"}, "The cursor of the previous page."),
            ],
        ),
        "post": _op(
            "scheduleJob",
            "Schedule one job.",
            _json(ref("Scheduled"), "Scheduled."),
            _WRITE_ERRORS,
            body="NewJob",
            ok_status="201",
            extra={"200": _json(ref("Scheduled"), "Another job holds the unique key: its id.")},
        ),
    },
    "/jobs/retry": {
        "post": _op(
            "retryJobs",
            "Run every failed job of a queue and/or type (or all) again.",
            _json(
                {
                    "type": "object",
                    "properties": {
                        "ids": {"type": "array", "items": {"type": "integer"}},
                        "count": {"type": "integer"},
                    },
                    "required": ["ids", "count"],
                },
                "The jobs put back.",
            ),
            _WRITE_ERRORS,
            body="Filters",
        ),
    },
    "/jobs/cancel": {
        "post": _op(
            "cancelJobs",
            "Cancel every live job of a queue and/or type (one filter at least).",
            _json(
                {
                    "type": "object",
                    "properties": {"cancelled": {"type": "integer"}, "cancelling": {"type": "integer"}},
                    "required": ["cancelled", "cancelling"],
                },
                "Waiting jobs cancelled, running jobs told to stop.",
            ),
            _WRITE_ERRORS,
            body="Filters",
        ),
    },
    "/jobs/{job_id}": {
        "get": _op(
            "getJob",
            "One job with its runs.",
            _json(ref("Job"), "The job."),
            (*_READ_ERRORS, "404"),
            params=[_JOB_ID],
        ),
        "delete": _op(
            "deleteJob",
            "Remove a pending, scheduled or suspended job (its runs stay).",
            _json(ref("Action"), "Removed."),
            ("400", "401", "403", "404", "409", "503"),
            params=[_JOB_ID],
        ),
    },
    **{
        f"/jobs/{{job_id}}/{action}": {
            "post": _op(
                f"{action}Job",
                summary,
                _json(ref("Action"), "Done."),
                (*_WRITE_ERRORS, "404", "409"),
                params=[_JOB_ID],
            )
        }
        for action, summary in (
            ("cancel", "Cancel a job: a waiting one at once, a running one by its worker."),
            ("retry", "Run a failed or cancelled job again, under its id."),
            ("suspend", "Take a pending or scheduled job out of the queue."),
            ("resume", "Put a suspended job back in the queue."),
        )
    },
    "/stats": {
        "get": _op(
            "getStats",
            "Live jobs by queue and type.",
            _json(ref("Stats"), "Counts."),
            _READ_ERRORS,
            params=[_query("tenant", {"type": "string"}, "Only the live jobs of this tenant.")],
        )
    },
    "/queues": {
        "get": _op(
            "getQueues",
            "Per queue: live jobs by state, and runs that ended in the window.",
            _json(ref("Queues"), "The queues."),
            _READ_ERRORS,
            params=[_WINDOW],
        )
    },
    "/types": {
        "get": _op(
            "getTypes",
            "The job types the app registered.",
            _json({"type": "array", "items": ref("JobType")}, "The types."),
            ("401",),
        )
    },
    "/workers": {
        "get": _op(
            "getWorkers",
            "The registered workers.",
            _json({"type": "array", "items": ref("Worker")}, "The workers."),
            _READ_ERRORS,
        )
    },
    "/workers/{worker_id}/remove": {
        "post": _op(
            "removeWorker",
            "Remove a worker's row; with force, release the jobs it holds as reaping does.",
            _json(ref("WorkerRemoved"), "Removed."),
            (*_WRITE_ERRORS, "404", "409"),
            params=[
                {
                    "name": "worker_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
                }
            ],
            body="WorkerRemove",
        )
    },
    "/activity": {
        "get": _op(
            "getActivity",
            "Runs that ended recently, per time bucket and per queue.",
            _json(ref("Activity"), "The activity."),
            _READ_ERRORS,
            params=[
                _WINDOW,
                _query(
                    "bucket_s", {"type": "number", "exclusiveMinimum": 0, "default": 60}, "Bucket length."
                ),
            ],
        )
    },
    "/periodic": {
        "get": _op(
            "getPeriodic",
            "The periodic declarations: schedule, next fire time, last tick and its outcome.",
            _json({"type": "array", "items": ref("Periodic")}, "The declarations, by name."),
            _READ_ERRORS,
        )
    },
    "/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document.",
            "responses": {
                "200": {"description": "OpenAPI 3.1.", "content": {"application/json": {}}},
                **_errors("401"),
            },
        }
    },
}


def document(server: str = "/api") -> dict[str, Any]:
    """The OpenAPI document, its one server at ``server`` (the API's path where it is mounted)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pgqueue dashboard API",
            "version": "1",
            "description": 'Look up and act on pgqueue jobs. Errors: {"error": code, "message": text}.',
        },
        "servers": [{"url": server}],
        "security": [{"bearer": []}, {}],
        "paths": _PATHS,
        "components": {
            "schemas": {**SCHEMAS, **PULL_SCHEMAS},
            "responses": {f"E{s}": _json(ref("Error"), text) for s, text in ERROR_STATUSES.items()},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "When the dashboard has a token.",
                }
            },
        },
    }
