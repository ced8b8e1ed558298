"""The memory store's rows: a live job, a logged run, its clock, and shared constants.

The constants are those the PostgreSQL store's statements use (lock values, notes).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import struct
import time
from typing import Any

from pgqueue._records import JobState

__all__ = [
    "CANCEL_NOTE",
    "END_STATES",
    "FAILED_OUTCOMES",
    "LIVE_STATES",
    "MEMORY_SCHEMA",
    "SUSPENDED",
    "WAITING",
    "LiveJob",
    "LoggedRun",
    "MemoryClock",
    "as_real",
    "end_state",
    "to_datetime",
]


MEMORY_SCHEMA = "memory"  # what the in-memory store answers for its schema name
CANCEL_NOTE = "cancelled before it ran"  # as the PostgreSQL store's
WAITING, SUSPENDED = -1, 0  # the lock values of jobs no worker holds (as in jobs.sql)
_UTC = dt.UTC


def to_datetime(epoch: float) -> dt.datetime:
    """Epoch seconds as an aware datetime, as asyncpg returns a timestamptz."""
    return dt.datetime.fromtimestamp(epoch, _UTC)


class MemoryClock:
    """The memory store's "database clock": the wall clock plus an offset tests move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        """Seconds since the epoch, on this clock."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward (a retry due in 60 s is due after ``advance(60)``)."""
        self.offset += seconds


@dataclasses.dataclass(slots=True)
class LiveJob:
    """One live job: the columns of ``jobs`` that the memory store needs."""

    id: int
    queue: str
    type: str
    params: str | None
    run_at: float
    inserted_at: float
    priority: int
    timeout_s: float | None
    delayed: bool
    worker_id: int | None = None
    attempt: int = 0
    attempt_base: int = 0
    errors: int = 0
    last_error: str | None = None
    claimed_at: float | None = None
    cancel_requested: bool = False
    awaited: bool = False
    progress: float | None = None
    progress_message: str | None = None
    unique_key: str | None = None
    unique_hold: float | None = None
    unique_ends: tuple[str, ...] | None = None
    waiting_on: int | None = None
    has_dependents: bool = False
    suspend_requested: bool = False
    checkpoint: str | None = None
    trace_context: str | None = None
    tenant: str | None = None
    lease_until: float | None = None  # a pull lease's deadline, set only while one holds the job

    def claim_row(self) -> tuple[Any, ...]:
        """What a claim returns for this job, in ``job_claim_many``'s order (``ROW_*``)."""
        return (
            self.id,
            self.queue,
            self.type,
            self.params,
            self.priority,
            self.attempt,
            self.errors,
            self.last_error,
            self.run_at,
            self.inserted_at,
            self.timeout_s,
            self.cancel_requested,
            self.attempt - self.attempt_base,
            self.checkpoint,
            self.trace_context,
            self.tenant,
        )

    def state(self, now: float) -> str:
        """As ``job_state()`` in sql/006."""
        if self.worker_id == WAITING:
            return "waiting"
        if self.worker_id == SUSPENDED:
            return "suspended"
        if self.worker_id is not None:
            return "running"
        return "scheduled" if self.delayed and self.run_at > now else "pending"

    def due(self, now: float) -> bool:
        """Claimable now."""
        return self.worker_id is None and (not self.delayed or self.run_at <= now)


@dataclasses.dataclass(slots=True)
class LoggedRun:
    """One row of ``job_runs``."""

    job_id: int
    worker_id: int | None
    inserted_at: float
    run_at: float
    started_at: float
    finished_at: float
    retry_at: float | None
    attempt: int
    priority: int
    queue: str
    type: str
    outcome: str
    error: str | None
    params: str | None
    result: str | None = None
    tenant: str | None = None
    log: str | None = None
    """The lines the handler wrote through job.log (a JSON array), or None."""

    def row(self, *, with_log: bool = True) -> dict[str, Any]:
        """The row as job_runs_get_many returns it (its log only ``with_log``, as there)."""
        return {
            "job_id": self.job_id,
            "attempt": self.attempt,
            "outcome": self.outcome,
            "worker_id": self.worker_id,
            "run_at": to_datetime(self.run_at),
            "started_at": to_datetime(self.started_at),
            "finished_at": to_datetime(self.finished_at),
            "retry_at": None if self.retry_at is None else to_datetime(self.retry_at),
            "error": self.error,
            "result": self.result,
            "queue": self.queue,
            "type": self.type,
            "params": self.params,
            "priority": self.priority,
            "inserted_at": to_datetime(self.inserted_at),
            "tenant": self.tenant,
            "log": self.log if with_log else None,
        }


def as_real(value: float) -> float:
    """``value`` as PostgreSQL's ``real`` stores it: the nearest 4-byte float."""
    stored: float = struct.unpack("f", struct.pack("f", value))[0]
    return stored


def end_state(run: LoggedRun) -> str:
    """As ``run_end_state()`` in sql/006."""
    if run.retry_at is not None:
        return "gone"
    if run.outcome in ("succeeded", "cancelled"):
        return run.outcome
    return "failed"


END_STATES = {"succeeded": "succeeded", "cancelled": "cancelled"}  # any other final outcome: failed
FAILED_OUTCOMES = ("failed", "timeout", "crashed")  # the runs whose error is a job's last_error
LIVE_STATES = (JobState.PENDING, JobState.SCHEDULED, JobState.RUNNING, JobState.SUSPENDED, JobState.WAITING)
