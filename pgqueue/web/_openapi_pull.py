"""The pull API's part of the OpenAPI document: its paths and data shapes (``api_pull.py``).

A module of its own so that the pull routes and their description change together, apart
from the rest of the document; ``openapi.py`` merges :data:`PULL_PATHS` and
:data:`PULL_SCHEMAS` into the one document.
"""

from __future__ import annotations

from typing import Any, Final

from ._openapi_schemas import ANY, NULL_TIME, TIME, nullable, ref

__all__ = ["PULL_PATHS", "PULL_SCHEMAS"]

_NAMES = {"type": ["array", "null"], "items": {"type": "string"}, "minItems": 1}
_LEASE_S = {
    "type": ["number", "null"],
    "exclusiveMinimum": 0,
    "maximum": 86400,
    "description": "Seconds the lease lasts without a heartbeat (default 30).",
}

PULL_SCHEMAS: Final[dict[str, Any]] = {
    "Lease": {
        "type": "object",
        "properties": {
            "token": {"type": "string", "description": "<job id>-<attempt>-<consumer id>: the lease's name."},
            "id": {"type": "integer"},
            "type": {"type": "string"},
            "queue": {"type": "string"},
            "params": ANY,
            "attempt": {"type": "integer", "minimum": 1},
            "priority": {"type": "integer"},
            "expires_at": TIME,
            "lease_s": {"type": "number"},
            "tenant": nullable("string"),
        },
        "required": [
            "token",
            "id",
            "type",
            "queue",
            "params",
            "attempt",
            "priority",
            "expires_at",
            "lease_s",
            "tenant",
        ],
    },
    "Leases": {
        "type": "object",
        "properties": {"leases": {"type": "array", "items": ref("Lease"), "minItems": 1}},
        "required": ["leases"],
    },
    "DequeueRequest": {
        "type": "object",
        "properties": {
            "types": _NAMES,
            "queues": _NAMES,
            "timeout": {
                "type": ["number", "null"],
                "minimum": 0,
                "maximum": 60,
                "default": 30,
                "description": "Seconds to wait for a job (0: try once).",
            },
            "lease": _LEASE_S,
            "n": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1},
        },
        "additionalProperties": False,
    },
    "LeaseRequest": {
        "type": "object",
        "properties": {"lease": _LEASE_S},
        "additionalProperties": False,
    },
    "FinishRequest": {
        "type": "object",
        "properties": {"result": ANY},
        "additionalProperties": False,
    },
    "FailRequest": {
        "type": "object",
        "properties": {
            "error": {"type": "string", "minLength": 1},
            "retry_at": NULL_TIME,
            "retry_in": {"type": ["number", "null"], "minimum": 0},
        },
        "required": ["error"],
        "additionalProperties": False,
    },
    "NoFields": {"type": "object", "additionalProperties": False},
    "Heartbeat": {
        "type": "object",
        "properties": {"token": {"type": "string"}, "expires_at": TIME},
        "required": ["token", "expires_at"],
    },
    "Finished": {
        "type": "object",
        "properties": {
            "token": {"type": "string"},
            "id": {"type": "integer"},
            "outcome": {"const": "succeeded"},
        },
        "required": ["token", "id", "outcome"],
    },
    "Failed": {
        "type": "object",
        "properties": {"token": {"type": "string"}, "id": {"type": "integer"}, "retry_at": NULL_TIME},
        "required": ["token", "id", "retry_at"],
    },
    "Requeued": {
        "type": "object",
        "properties": {
            "token": {"type": "string"},
            "id": {"type": "integer"},
            "requeued": {"type": "boolean"},
        },
        "required": ["token", "id", "requeued"],
    },
}

_ERRORS = ("400", "401", "403", "409", "413", "415", "501", "503")
_TOKEN = {
    "name": "token",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": r"^\d{1,19}-\d{1,10}-\d{1,19}$"},
}


def _op(
    op_id: str,
    summary: str,
    ok: tuple[str, str],
    body: str,
    *,
    params: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
    required: bool = False,
) -> dict[str, Any]:
    schema, description = ok
    responses: dict[str, Any] = {
        "200": {"description": description, "content": {"application/json": {"schema": ref(schema)}}},
        **(extra or {}),
        **{s: {"$ref": f"#/components/responses/E{s}"} for s in _ERRORS},
    }
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "tags": ["pull"],
        "requestBody": {"required": required, "content": {"application/json": {"schema": ref(body)}}},
        "responses": responses,
    }
    if params:
        op["parameters"] = params
    return op


_LOST = " 409 lease_lost when the lease no longer holds its job (nothing changed)."

PULL_PATHS: Final[dict[str, Any]] = {
    "/dequeue": {
        "post": _op(
            "dequeue",
            "Lease due jobs, waiting up to timeout seconds (at most 60) for the first. With n > 1: every "
            "due job up to n at once, or, when none is due, the first to come and those due by then.",
            ("Leases", "The leases, in priority order."),
            "DequeueRequest",
            extra={"204": {"description": "No job came within the timeout."}},
        )
    },
    "/jobs/{job_id}/dequeue": {
        "post": _op(
            "dequeueJob",
            "Lease one given job now if it is waiting to run (409 not_pending otherwise).",
            ("Leases", "The lease."),
            "LeaseRequest",
            params=[
                {
                    "name": "job_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
                }
            ],
            extra={"404": {"$ref": "#/components/responses/E404"}},
        )
    },
    "/leases/{token}/heartbeat": {
        "post": _op(
            "heartbeatLease",
            "Move the lease's deadline to now + lease seconds (default 30, whatever it was taken for); "
            "409 job_cancelled when the job was cancelled." + _LOST,
            ("Heartbeat", "The new deadline."),
            "LeaseRequest",
            params=[_TOKEN],
        )
    },
    "/leases/{token}/finish": {
        "post": _op(
            "finishLease",
            "End the job as succeeded with result." + _LOST,
            ("Finished", "Succeeded."),
            "FinishRequest",
            params=[_TOKEN],
        )
    },
    "/leases/{token}/fail": {
        "post": _op(
            "failLease",
            "Record a failed run: again at retry_at or after retry_in seconds, else as the type's "
            "error filter decides." + _LOST,
            ("Failed", "When the job runs again, or null when it failed for good (or was cancelled)."),
            "FailRequest",
            params=[_TOKEN],
            required=True,
        )
    },
    "/leases/{token}/requeue": {
        "post": _op(
            "requeueLease",
            "Give the job back to run again now (the run counts as an attempt)." + _LOST,
            ("Requeued", "false when that was its last allowed attempt: it ended as failed."),
            "NoFields",
            params=[_TOKEN],
        )
    },
}
