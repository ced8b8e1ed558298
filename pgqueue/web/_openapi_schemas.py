"""The data shapes of the API's OpenAPI document (``components/schemas``), as data.

Kept apart from the paths (``openapi.py``) so that each file stays readable; the shapes
follow ``pgqueue/_jsonable.py``, which the CLI's ``--json`` and the API share.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ANY",
    "KINDS",
    "LIVE",
    "NULL_TIME",
    "OUTCOMES",
    "SCHEMAS",
    "STATES",
    "TIME",
    "counts",
    "nullable",
    "ref",
]

STATES = ["pending", "scheduled", "running", "suspended", "waiting", "succeeded", "failed", "cancelled"]
LIVE = ["pending", "scheduled", "running", "suspended", "waiting"]
OUTCOMES = ["succeeded", "failed", "timeout", "interrupted", "cancelled", "crashed", "snoozed", "suspended"]
KINDS = ["succeeded", "failed", "retried", "cancelled"]


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def counts(keys: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {k: {"type": "integer", "minimum": 0} for k in keys},
        "required": keys,
        "additionalProperties": False,
    }


def nullable(type_: str, **extra: object) -> dict[str, Any]:
    return {"type": [type_, "null"], **extra}


TIME = {"type": "string", "format": "date-time"}
NULL_TIME = {"type": ["string", "null"], "format": "date-time"}
ANY: dict[str, Any] = {}  # any JSON value

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        "required": ["error", "message"],
    },
    "Run": {
        "type": "object",
        "properties": {
            "attempt": {"type": "integer", "minimum": 1},
            "outcome": {"enum": OUTCOMES},
            "worker_id": nullable("integer"),
            "started_at": TIME,
            "finished_at": TIME,
            "retry_at": NULL_TIME,
            "error": nullable("string"),
            "result": ANY,
            "log": {
                "type": "array",
                "items": ref("LogLine"),
                "description": "The lines the handler wrote through job.log during this run; "
                "empty in job lists (read one job for them).",
            },
        },
        "required": [
            "attempt",
            "outcome",
            "worker_id",
            "started_at",
            "finished_at",
            "retry_at",
            "error",
            "result",
            "log",
        ],
    },
    "LogLine": {
        "type": "object",
        "properties": {
            "at": TIME,
            "level": {"enum": ["debug", "info", "warning", "error"]},
            "msg": {"type": "string"},
            "fields": {"type": "object", "description": "The keyword fields written with the line."},
        },
        "required": ["at", "level", "msg", "fields"],
        "additionalProperties": False,
    },
    "Job": {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "type": {"type": "string"},
            "queue": {"type": "string"},
            "state": {"enum": STATES},
            "params": ANY,
            "priority": {"type": "integer"},
            "tenant": nullable("string"),
            "attempts": {"type": "integer", "minimum": 0},
            "errors": {"type": "integer", "minimum": 0},
            "last_error": nullable("string"),
            "inserted_at": TIME,
            "run_at": TIME,
            "started_at": NULL_TIME,
            "finished_at": NULL_TIME,
            "result": ANY,
            "progress": nullable("number"),
            "progress_message": nullable("string"),
            "suspend_requested": {"type": "boolean"},
            "checkpoint": ANY,
            "depends_on": {"type": "array", "items": {"type": "integer"}},
            "dependents": {"type": "array", "items": {"type": "integer"}},
            "runs": {"type": "array", "items": ref("Run")},
        },
        "required": ["id", "type", "queue", "state", "params", "priority", "attempts", "runs"],
    },
    "Page": {
        "type": "object",
        "properties": {"items": {"type": "array", "items": ref("Job")}, "cursor": nullable("string")},
        "required": ["items", "cursor"],
    },
    "NewJob": {
        "type": "object",
        "properties": {
            "type": {"type": "string", "description": "A job type the app's Scheduler registered."},
            "params": {"description": "Any JSON; checked by the type's params model, if it has one."},
            "queue": nullable("string", description="Default: the type's queue."),
            "run_at": nullable("string", format="date-time", description="ISO 8601 with its offset."),
            "delay_s": nullable("number", minimum=0, description="Seconds from now (not with run_at)."),
            "priority": {"type": "integer", "description": "Lower runs first.", "default": 0},
            "unique_key": nullable("string", description="Return the job holding this key instead."),
            "tenant": nullable(
                "string", description="The job's tenant: non-empty, at most 200 characters, no NUL."
            ),
        },
        "required": ["type"],
        "additionalProperties": False,
    },
    "Scheduled": {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "inserted": {"type": "boolean"}},
        "required": ["id", "inserted"],
    },
    "Filters": {
        "type": "object",
        "properties": {"queue": nullable("string"), "type": nullable("string")},
        "additionalProperties": False,
    },
    "Action": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "action": {"enum": ["cancel", "retry", "suspend", "resume", "delete"]},
            "outcome": {"enum": ["cancelled", "cancelling", "done"]},
        },
        "required": ["id", "action", "outcome"],
    },
    "StateCounts": {"type": "object", "additionalProperties": counts(LIVE)},
    "Stats": {
        "type": "object",
        "properties": {"by_queue": ref("StateCounts"), "by_type": ref("StateCounts")},
        "required": ["by_queue", "by_type"],
    },
    "ActivityCounts": counts(KINDS),
    "Activity": {
        "type": "object",
        "properties": {
            "since": TIME,
            "until": TIME,
            "bucket_s": {"type": "number"},
            "buckets": {
                "type": "array",
                "items": {
                    "allOf": [ref("ActivityCounts")],
                    "properties": {"start": TIME},
                    "required": ["start"],
                },
            },
            "by_queue": {"type": "object", "additionalProperties": ref("ActivityCounts")},
            "totals": ref("ActivityCounts"),
        },
        "required": ["since", "until", "bucket_s", "buckets", "by_queue", "totals"],
    },
    "Queues": {
        "type": "object",
        "properties": {
            "since": TIME,
            "until": TIME,
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "live": counts(LIVE),
                        "finished": ref("ActivityCounts"),
                    },
                    "required": ["name", "live", "finished"],
                },
            },
        },
        "required": ["since", "until", "items"],
    },
    "JobType": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "queue": {"type": "string"},
            "retry": nullable("string"),
            "timeout": nullable("number"),
            "max_attempts": {"type": "integer"},
            "suspendable": {"type": "boolean"},
            "unique_for": {"type": "number"},
            "unique_kept_after": {"type": "array", "items": {"type": "string"}},
            "params_schema": nullable("object", description="The JSON Schema of its params model."),
        },
        "required": ["name", "queue", "max_attempts", "params_schema"],
    },
    "Periodic": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "schedule": {"type": "string", "description": "Cron (and its zone), or every <time>."},
            "type": {"type": "string"},
            "queue": {"type": "string"},
            "next_fire_at": NULL_TIME,
            "last_tick": NULL_TIME,
            "last_job_id": nullable("integer"),
            "last_outcome": nullable(
                "string", description="The last job's state, 'skipped (overlap)', or null (none, or unknown)."
            ),
            "declared": {"type": "boolean", "description": "Declared by the dashboard's scheduler."},
        },
        "required": [
            "name",
            "schedule",
            "type",
            "queue",
            "next_fire_at",
            "last_tick",
            "last_job_id",
            "last_outcome",
            "declared",
        ],
    },
    "Worker": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "hostname": {"type": "string"},
            "pid": {"type": "integer"},
            "queues": {"type": "array", "items": {"type": "string"}},
            "kind": {"enum": ["worker", "pull"]},
            "concurrency": {"type": ["integer", "null"], "description": "null for a pull consumer"},
            "started_at": TIME,
            "heartbeat": TIME,
            "jobs_held": {"type": "integer", "description": "Jobs it holds now (running or claimed)."},
        },
        "required": [
            "id",
            "hostname",
            "pid",
            "queues",
            "kind",
            "concurrency",
            "started_at",
            "heartbeat",
            "jobs_held",
        ],
    },
    "WorkerRemove": {
        "type": "object",
        "properties": {"force": {"type": "boolean", "default": False}},
        "additionalProperties": False,
    },
    "WorkerRemoved": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "removed": {"const": True},
            "jobs_released": {"type": "integer", "description": "Jobs released (0 without force)."},
        },
        "required": ["id", "removed", "jobs_released"],
    },
}
