"""Management records as JSON-ready dicts: one shape for the CLI's ``--json`` and the web API.

Values stay Python where orjson encodes them itself (datetimes as ISO 8601 with their
offset, ints, None); enums become their string values. Keeping the shapes here, not in
each front end, means ``pgqueue jobs show --json`` and ``GET /api/jobs/{id}`` cannot drift.
"""

from __future__ import annotations

from typing import Any

from ._records import (
    Activity,
    ActivityCounts,
    JobRecord,
    JobState,
    JobStats,
    JobTypeInfo,
    RunRecord,
    WorkerInfo,
)

__all__ = [
    "LIVE_STATES",
    "activity_counts_json",
    "activity_json",
    "job_json",
    "job_type_json",
    "run_json",
    "state_counts_json",
    "stats_json",
    "worker_json",
]

LIVE_STATES = (JobState.PENDING, JobState.SCHEDULED, JobState.RUNNING, JobState.SUSPENDED, JobState.WAITING)
"""The states :class:`JobStats` counts, in the order tables show them."""


def run_json(run: RunRecord) -> dict[str, Any]:
    """One run of a job."""
    return {
        "attempt": run.attempt,
        "outcome": run.outcome.value,
        "worker_id": run.worker_id,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "retry_at": run.retry_at,
        "error": run.error,
        "result": run.result,
        "log": [
            {"at": line.at, "level": line.level, "msg": line.msg, "fields": line.fields} for line in run.log
        ],
    }


def job_json(record: JobRecord) -> dict[str, Any]:
    """A job with its runs (``jobs show --json``, ``GET /api/jobs/{id}``)."""
    return {
        "id": record.id,
        "type": record.type,
        "queue": record.queue,
        "state": record.state.value,
        "params": record.params,
        "priority": record.priority,
        "tenant": record.tenant,
        "attempts": record.attempts,
        "errors": record.errors,
        "last_error": record.last_error,
        "inserted_at": record.inserted_at,
        "run_at": record.run_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "result": record.result,
        "progress": record.progress,
        "progress_message": record.progress_message,
        "suspend_requested": record.suspend_requested,
        "checkpoint": record.checkpoint,
        "depends_on": list(record.depends_on),
        "dependents": list(record.dependents),
        "runs": [run_json(r) for r in record.runs],
    }


def state_counts_json(counts: dict[str, dict[JobState, int]]) -> dict[str, dict[str, int]]:
    """Per name (queue or type), the count of every live state, absent ones as 0."""
    return {name: {s.value: row.get(s, 0) for s in LIVE_STATES} for name, row in counts.items()}


def stats_json(stats: JobStats) -> dict[str, Any]:
    """Live jobs by queue and by type (``stats --json``, ``GET /api/stats``)."""
    return {"by_queue": state_counts_json(stats.by_queue), "by_type": state_counts_json(stats.by_type)}


def worker_json(worker: WorkerInfo) -> dict[str, Any]:
    """A registered worker (``workers --json``, ``GET /api/workers``)."""
    return {
        "id": worker.id,
        "hostname": worker.hostname,
        "pid": worker.pid,
        "queues": list(worker.queues),
        "kind": worker.kind,
        "concurrency": worker.concurrency,
        "started_at": worker.started_at,
        "heartbeat": worker.heartbeat,
        "jobs_held": worker.jobs_held,
    }


def job_type_json(info: JobTypeInfo) -> dict[str, Any]:
    """A registered job type, its params JSON Schema included."""
    return {
        "name": info.name,
        "queue": info.queue,
        "retry": None if info.retry is None else repr(info.retry),
        "timeout": info.timeout,
        "max_attempts": info.max_attempts,
        "suspendable": info.suspendable,
        "unique_for": info.unique_for,
        "unique_kept_after": list(info.unique_kept_after),
        "params_schema": info.params_schema,
    }


def activity_counts_json(counts: ActivityCounts) -> dict[str, int]:
    """Runs by kind."""
    return {
        "succeeded": counts.succeeded,
        "failed": counts.failed,
        "retried": counts.retried,
        "cancelled": counts.cancelled,
    }


def activity_json(activity: Activity) -> dict[str, Any]:
    """Recent runs in time buckets and per queue (``GET /api/activity``)."""
    return {
        "since": activity.since,
        "until": activity.until,
        "bucket_s": activity.bucket_s,
        "buckets": [{"start": b.start, **activity_counts_json(b.counts)} for b in activity.buckets],
        "by_queue": {q: activity_counts_json(c) for q, c in activity.by_queue.items()},
        "totals": activity_counts_json(activity.totals),
    }
