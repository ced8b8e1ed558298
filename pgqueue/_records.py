"""What job management returns: a job's stored state and history, never the hot-path Job.

A live job is a row of ``jobs``; a finished one left that table and lives on as its runs in
``job_runs``. :class:`JobRecord` joins both views: the job's fields, its :class:`JobState`
and every logged run as a :class:`RunRecord`. These are plain frozen dataclasses, built off
the hot path, where a dataclass per row costs nothing that matters.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from typing import Any

from ._joblog import LogLine
from ._models import Outcome
from ._retry import ErrorFilter

__all__ = [
    "Activity",
    "ActivityBucket",
    "ActivityCounts",
    "CancelCounts",
    "JobRecord",
    "JobState",
    "JobStats",
    "JobTypeInfo",
    "Page",
    "RunRecord",
    "WorkerInfo",
]


class JobState(enum.StrEnum):
    """Where a job is in its life.

    ::

        pending ─┬─▶ running ─┬─▶ succeeded
        scheduled ┘     │     ├─▶ failed     (a final error, or retries exhausted)
            ▲           │     └─▶ cancelled  (cancel(), or the handler raised Cancel)
            └───────────┘  put back: a retry, a snooze, an interrupted or crashed run

    ``pending`` and ``scheduled`` end as ``cancelled`` too when cancel() reaches them first;
    suspend() takes them out of the queue (``suspended``) until resume() puts them back. A
    job scheduled with ``depends_on`` is ``waiting`` until its dependencies have succeeded
    (then ``pending`` or ``scheduled``), and ends ``cancelled`` when one does not.
    """

    PENDING = "pending"
    """Due now and waiting for a worker."""
    SCHEDULED = "scheduled"
    """Waiting for a future time: delayed at schedule(), or put back for a retry."""
    RUNNING = "running"
    """Claimed by a live worker."""
    SUSPENDED = "suspended"
    """Taken out of the queue by suspend(); resume() puts it back."""
    WAITING = "waiting"
    """Scheduled with depends_on: runs once every dependency has succeeded."""
    SUCCEEDED = "succeeded"
    """Ended: its last run succeeded (a skipped run included)."""
    FAILED = "failed"
    """Ended: its last run failed for good (a final error, a timeout, retries exhausted)."""
    CANCELLED = "cancelled"
    """Ended: cancelled by cancel() or cancel_many(), or by the handler raising Cancel."""

    @property
    def finished(self) -> bool:
        """True for the three end states."""
        return self in _FINISHED


_FINISHED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


@dataclasses.dataclass(frozen=True, slots=True)
class RunRecord:
    """One run of a job: one row of ``job_runs``."""

    attempt: int
    """The run's number, from 1."""
    outcome: Outcome
    """How it ended."""
    worker_id: int | None
    """The worker that ran it (None for a cancel that reached the job before any worker)."""
    run_at: dt.datetime
    """When the run was due."""
    started_at: dt.datetime
    """When it started (the database's clock)."""
    finished_at: dt.datetime
    """When it ended (the database's clock)."""
    retry_at: dt.datetime | None
    """When the job was put back to run again; None for a final run."""
    error: str | None
    """Error text with traceback for a failed run; the reason or note of a cancelled or
    skipped one."""
    result: Any
    """The handler's return value (decoded JSON), for a success."""
    log: list[LogLine] = dataclasses.field(default_factory=list)
    """The lines the handler wrote through ``job.log`` during this run, in order; empty when
    it wrote none, for a run cut short by a crash (its lines died with the worker), and in
    ``list_jobs()`` pages, which leave them out (``get_job()`` reads them)."""


@dataclasses.dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as stored: live, or finished and known by its runs."""

    id: int
    """The job's id, stable across its runs."""
    type: str
    """The registered job type."""
    queue: str
    """Its queue."""
    params: Any
    """The decoded params."""
    state: JobState
    """Where it is in its life."""
    priority: int
    """Lower runs first."""
    attempts: int
    """Runs started so far (claims), crashed and interrupted ones included."""
    errors: int
    """Failed runs so far (what retry filters count)."""
    last_error: str | None
    """The error text of the last failed run, if any."""
    inserted_at: dt.datetime
    """When it was scheduled."""
    run_at: dt.datetime
    """When it is (or was last) due."""
    started_at: dt.datetime | None
    """When its current or last run started; None before any run."""
    finished_at: dt.datetime | None
    """When it ended; None while it is live."""
    result: Any
    """The return value of its successful last run (decoded JSON); None otherwise."""
    progress: float | None
    """The running job's last reported progress, from 0 to 1 (None: none reported, or ended)."""
    progress_message: str | None
    """The message that came with it."""
    runs: tuple[RunRecord, ...]
    """Its logged runs in attempt order (``should_log_run`` may have left some out)."""
    suspend_requested: bool = False
    """suspend() asked the running job to stop at its next checkpoint."""
    checkpoint: Any = None
    """The checkpoint its next run reads (decoded JSON), saved by an earlier run."""
    depends_on: tuple[int, ...] = ()
    """The jobs it was scheduled to wait for (``depends_on``), ascending."""
    dependents: tuple[int, ...] = ()
    """The jobs scheduled to wait for it, ascending."""
    tenant: str | None = None
    """The tenant it was scheduled with (``schedule(..., tenant=)``); None: none."""


@dataclasses.dataclass(frozen=True, slots=True)
class CancelCounts:
    """What :meth:`Scheduler.cancel_many` did."""

    cancelled: int
    """Waiting jobs that ended as cancelled at once."""
    cancelling: int
    """Running jobs whose workers were told to stop them (they record ``cancelled``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    """One page of :meth:`Scheduler.list_jobs`, newest job first."""

    items: tuple[JobRecord, ...]
    """The jobs of this page."""
    cursor: str | None
    """Pass it as ``cursor=`` for the next page; None when this page is the last."""


@dataclasses.dataclass(frozen=True, slots=True)
class JobStats:
    """Live jobs (pending, scheduled, running, suspended, waiting) counted, from :meth:`Scheduler.stats`."""

    by_queue: dict[str, dict[JobState, int]]
    """Per queue, the count of each live state (absent states are 0)."""
    by_type: dict[str, dict[JobState, int]]
    """Per job type, the count of each live state."""


@dataclasses.dataclass(frozen=True, slots=True)
class JobTypeInfo:
    """A registered job type, as :meth:`Scheduler.job_types` describes it."""

    name: str
    """The type's name."""
    queue: str
    """Its default queue."""
    retry: ErrorFilter | None
    """Its error filter (None: no retries but an explicit ErrorWithRetry)."""
    timeout: float | None
    """Seconds a run may take; None: no limit."""
    max_attempts: int
    """Runs a job gets at most."""
    params_schema: dict[str, Any] | None
    """The JSON Schema of its params model; None for untyped params."""
    suspendable: bool = False
    """Whether suspend() may stop its running jobs at a checkpoint."""
    unique_for: float = 0.0
    """Seconds a job's unique key stays held after it ends in one of ``unique_kept_after``."""
    unique_kept_after: tuple[str, ...] = ("succeeded",)
    """The end states that keep the key (live jobs always hold theirs)."""


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A registered worker, as :meth:`Scheduler.list_workers` lists it."""

    id: int
    """Its id (never reused)."""
    hostname: str
    """The host it runs on."""
    pid: int
    """Its process id on that host."""
    queues: tuple[str, ...]
    """The queues it claims from."""
    started_at: dt.datetime
    """When it registered (the database's clock)."""
    heartbeat: dt.datetime
    """Its last heartbeat (the database's clock): a worker silent for ``dead_after`` is reaped."""
    kind: str = "worker"
    """``"worker"``: a :class:`Worker`; ``"pull"``: a scheduler leasing jobs (dequeue, claim)."""
    concurrency: int | None = None
    """The worker's ``concurrency`` option; None for a pull consumer."""
    jobs_held: int = 0
    """Jobs it holds now (running, or claimed and not started), when the list was read."""


@dataclasses.dataclass(frozen=True, slots=True)
class ActivityCounts:
    """Runs that ended, by how: what :class:`Activity` counts per bucket and per queue.

    Counted from the run log (``job_runs``), so a run that ``should_log_run`` left out is
    not counted. Snoozed, suspended and interrupted runs that were put back are no outcome
    and are counted nowhere.
    """

    succeeded: int = 0
    """Runs that succeeded (skipped ones included)."""
    failed: int = 0
    """Final failures: failed, timed-out, crashed or interrupted runs that were not retried."""
    retried: int = 0
    """Failed, timed-out or crashed runs that were put back for another run."""
    cancelled: int = 0
    """Jobs that ended cancelled (by cancel(), cancel_many(), or the handler raising Cancel)."""

    @property
    def total(self) -> int:
        """Every run counted here."""
        return self.succeeded + self.failed + self.retried + self.cancelled

    def __add__(self, other: ActivityCounts) -> ActivityCounts:
        """The counts of both, kind by kind."""
        return ActivityCounts(
            self.succeeded + other.succeeded,
            self.failed + other.failed,
            self.retried + other.retried,
            self.cancelled + other.cancelled,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ActivityBucket:
    """One time slice of :class:`Activity`."""

    start: dt.datetime
    """Its start (the database's clock); it ends where the next one starts."""
    counts: ActivityCounts
    """The runs that ended in it, every queue together."""


@dataclasses.dataclass(frozen=True, slots=True)
class Activity:
    """Runs that ended recently, in time buckets and per queue, from :meth:`Scheduler.activity`.

    Buckets are aligned on multiples of ``bucket_s`` since the epoch, so a chart refreshed a
    little later shows the same bars, and the newest bucket (the one ``until`` falls in) is
    still filling. ``since`` is the oldest bucket's start: the window asked for, rounded
    down to a bucket boundary, at most one bucket less.
    """

    since: dt.datetime
    """The oldest bucket's start (the database's clock)."""
    until: dt.datetime
    """When the counts were read (the database's clock)."""
    bucket_s: float
    """Each bucket's length in seconds."""
    buckets: tuple[ActivityBucket, ...]
    """Oldest first, one per bucket, empty ones included: a chart's fixed x axis."""
    by_queue: dict[str, ActivityCounts]
    """Per queue with runs in the window, the totals over the window."""

    @property
    def totals(self) -> ActivityCounts:
        """Every bucket together."""
        total = ActivityCounts()
        for bucket in self.buckets:
            total += bucket.counts
        return total
