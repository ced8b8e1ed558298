"""The store's roles: what each part of pgqueue needs from the database, one Protocol each.

See :mod:`pgqueue.store` for the list and why roles and not one interface.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from pgqueue._limits import LimitedClaim, LimitSeen, QueueLimit
from pgqueue._models import CancelResult, Row
from pgqueue._records import ActivityCounts, CancelCounts, JobRecord, JobState, WorkerInfo

from .batch import FinalizeResult, FlushBatch, NewJobs, ProgressReport
from .handles import CallerConnection, Faults, Held, LeaderLock, Notifications
from .periodic_rows import PeriodicDeclaration, PeriodicFire, PeriodicFired, PeriodicRow
from .retention_plan import RetentionPlan

__all__ = [
    "ActivityRows",
    "AdminStore",
    "EnqueueStore",
    "LimitsStore",
    "ManageStore",
    "PeriodicStore",
    "RetentionStore",
    "Store",
    "WorkerBackend",
    "WorkerStore",
]


@dataclasses.dataclass(frozen=True, slots=True)
class ActivityRows:
    """What a store's ``job_runs_activity`` read: the window and its non-empty cells."""

    since: dt.datetime
    """The oldest bucket's start (the database's clock)."""
    until: dt.datetime
    """When it was read (the database's clock)."""
    counts: list[tuple[int, str, ActivityCounts]]
    """(bucket index from 0, oldest first; queue; counts) for each cell with runs."""


class EnqueueStore(Protocol):
    """What scheduling and cancelling need."""

    schema: str

    async def job_insert(self, conn: CallerConnection | None, jobs: NewJobs, params: str) -> int:
        """Insert one job and wake its queue's workers, in one round trip."""
        ...

    async def job_insert_many(
        self,
        conn: CallerConnection | None,
        jobs: NewJobs,
        params: list[str],
        tenants: Sequence[str | None] | None = None,
    ) -> list[int]:
        """Insert jobs of one type and queue; ids in input order.

        ``tenants``: each job's tenant, one per params value (never more); None: none.
        """
        ...

    async def job_cancel(self, job_id: int) -> CancelResult:
        """End a waiting job as cancelled, or flag a claimed one and tell its worker."""
        ...

    async def job_insert_unique(
        self,
        conn: CallerConnection | None,
        jobs: NewJobs,
        params: str,
        *,
        key: str,
        keep_s: float,
        keep_after: Sequence[str],
    ) -> tuple[int, bool]:
        """Insert a job under ``key``, or find the job that holds it: (id, inserted)."""
        ...

    async def job_by_key(self, key: str) -> int | None:
        """The id of the job that holds ``key`` (live, or kept after its success)."""
        ...

    async def job_insert_dependent(
        self, conn: CallerConnection | None, jobs: NewJobs, params: str, depends_on: Sequence[int]
    ) -> tuple[int | None, dict[int, str]]:
        """Insert a job that runs once ``depends_on`` have succeeded.

        (id, {}) when inserted; else (None, {dependency: its state}) for the dependencies
        that failed, were cancelled or are unknown ('gone'), and nothing was written.
        """
        ...

    async def close(self) -> None:
        """Give back what the store holds for itself (before its pool closes)."""
        ...


class WorkerStore(Faults, Protocol):
    """What a worker's stages need: claims, flushes, the lease and maintenance."""

    schema: str

    async def schema_check(self) -> int:
        """The schema's version; SchemaNotMigratedError or SchemaTooNewError if it does not match."""
        ...

    def hold(self) -> Held | None:
        """A connection for one stage to keep, or None when the pool cannot spare one."""
        ...

    async def job_claim_many(
        self, queues: Sequence[str], limit: int, worker_id: int, held: Held | None = None
    ) -> list[Row]:
        """Claim up to ``limit`` due jobs; rows in the ``ROW_*`` column order, any order."""
        ...

    async def job_claim_announced(
        self, ids: Sequence[int], queues: Sequence[str], limit: int, worker_id: int, held: Held | None = None
    ) -> list[Row]:
        """Claim up to ``limit`` of ``ids`` still ready in ``queues`` (SKIP LOCKED), as job_claim_many."""
        ...

    async def job_next_due(self, queues: Sequence[str], held: Held | None = None) -> float | None:
        """Seconds (database clock) until the next delayed job in these queues is due."""
        ...

    async def job_claim_limited(
        self,
        queue: str,
        limit: int,
        worker_id: int,
        done: Sequence[tuple[int, int]],
        held: Held | None = None,
    ) -> LimitedClaim:
        """Claim up to ``limit`` due jobs of a limited queue, within its limits.

        ``done``: (id, attempt) of this worker's finished runs not yet written; their slots
        are free. A queue whose limit was removed is claimed as ``job_claim_many`` would.
        """
        ...

    async def queue_limited(self, queues: Sequence[str], held: Held | None = None) -> dict[str, LimitSeen]:
        """Which of these queues have a limit: each with its concurrency limit and whether it is leased."""
        ...

    async def lease_slots(
        self, queue: str, worker_id: int, want: int, held: Held | None = None
    ) -> int | None:
        """Set this worker's slots of a leased queue to as many of ``want`` as fit; None: not leased."""
        ...

    async def queue_limit_adopt(self, queues: Sequence[str], worker_id: int, held: Held | None = None) -> int:
        """Count the jobs this worker holds in newly limited ``queues`` against their limits."""
        ...

    async def job_finalize_many(
        self, worker_id: int, batch: FlushBatch, held: Held | None = None, *, clock_offset: float = 0.0
    ) -> FinalizeResult:
        """Write one flush: end and put back jobs, fenced by (worker, attempt), and log their runs."""
        ...

    async def job_release_many(self, worker_id: int, ids: Sequence[int]) -> int:
        """Hand back claimed jobs that never started."""
        ...

    async def job_cancel_requested_many(self, ids: Sequence[int]) -> dict[int, bool]:
        """Which of these jobs were flagged by cancel() (True) or, if not, by suspend() (False)."""
        ...

    async def worker_register(
        self, queues: Sequence[str], concurrency: int | None = None
    ) -> tuple[int, float]:
        """Insert this worker's row (with its concurrency); its id and the database's clock (epoch s)."""
        ...

    async def worker_heartbeat(self, worker_id: int) -> float | None:
        """Refresh the lease; the database's clock, or None once this worker was reaped."""
        ...

    async def worker_deregister(self, worker_id: int) -> int:
        """Release what the worker holds and drop its row; returns the jobs released."""
        ...

    async def worker_reap(self, dead_after: float, self_id: int) -> tuple[int, int]:
        """Free the jobs of workers silent for ``dead_after`` s; (jobs released, workers reaped)."""
        ...

    async def job_progress_many(self, worker_id: int, reports: Sequence[ProgressReport]) -> None:
        """Write the latest progress of jobs this worker runs, fenced by (worker, attempt)."""
        ...

    async def unique_keys_expire(self) -> int:
        """Drop the unique keys kept after success whose time is up; returns how many."""
        ...

    async def jobs_vacuum_if_needed(self, min_dead: int) -> int | None:
        """Vacuum the hot table past ``min_dead`` dead tuples; the count removed, or None."""
        ...

    async def leader_lock(self) -> LeaderLock | None:
        """Try once for the maintenance-leader lock; None while another process holds it."""
        ...

    def can_elect(self) -> bool:
        """Whether this store can keep a connection for the leader lock for a worker's life."""
        ...


class ManageStore(Notifications, Protocol):
    """Job management: look up and act on jobs by id or in bulk."""

    async def job_get(self, job_id: int) -> JobRecord | None:
        """A live or finished job with its runs; None when the id is unknown."""
        ...

    async def job_cancel_many(self, queue: str | None, type_: str | None) -> CancelCounts:
        """Cancel every live job of ``queue`` and/or ``type_`` (None matches any)."""
        ...

    async def job_list(
        self,
        *,
        below: int,
        queue: str | None,
        type_: str | None,
        state: JobState | None,
        limit: int,
        tenant: str | None = None,
    ) -> list[JobRecord]:
        """Up to ``limit`` jobs with ids below ``below``, newest first, live and finished."""
        ...

    async def job_stats(self, tenant: str | None = None) -> list[tuple[str, str, JobState, int]]:
        """Live jobs (of ``tenant``, when given) counted by (queue, type, state)."""
        ...

    async def job_retry_many(
        self, ids: Sequence[int] | None, queue: str | None, type_: str | None, states: Sequence[JobState]
    ) -> list[int]:
        """Put finished jobs whose last run ended in ``states`` back, due now; their ids."""
        ...

    async def job_delete(self, job_id: int) -> bool:
        """Remove a live job no worker holds; False when there is none to remove."""
        ...

    async def job_suspend(self, job_id: int) -> bool:
        """Make a pending or scheduled job unclaimable; False when it is neither."""
        ...

    async def job_request_suspend(self, job_id: int, types: Sequence[str]) -> bool:
        """Ask the worker of a running job of one of ``types`` to suspend it; False if none."""
        ...

    async def job_resume(self, job_id: int) -> bool:
        """Make a suspended job claimable again; False when it is not suspended."""
        ...

    async def job_await(self, job_id: int) -> bool:
        """Mark a live job so that its end is notified ('e:<id>'); False when it is not live."""
        ...

    async def worker_list(self) -> list[WorkerInfo]:
        """The registered workers, oldest first, with the jobs each holds."""
        ...

    async def worker_remove(self, worker_id: int, *, force: bool) -> int:
        """Drop a worker's row, releasing its jobs as reaping does when ``force``; jobs released.

        Raises WorkerNotFound for an unknown id and WorkerHasActiveJobs while it holds jobs
        and ``force`` is False; either way nothing changed.
        """
        ...

    async def job_runs_activity(self, bucket_s: float, buckets: int) -> ActivityRows:
        """Runs that ended in the last ``buckets`` buckets of ``bucket_s`` seconds, by bucket and queue.

        Buckets are aligned on multiples of ``bucket_s`` since the epoch, the newest holding
        now; runs are sorted into kinds as ``runs.sql`` says.
        """
        ...


class AdminStore(Protocol):
    """Migrations and the schema version."""

    schema: str

    async def migrate(self) -> list[int]:
        """Apply pending migrations; the versions applied (empty when up to date)."""
        ...

    async def schema_version(self) -> int | None:
        """The highest applied migration, or None when the schema was never migrated."""
        ...

    async def migration_pending_sql(self) -> str:
        """The SQL script migrate() would run now; empty when up to date."""
        ...


class PeriodicStore(Protocol):
    """Periodic declarations: their rows, and the one write that enqueues a tick once."""

    schema: str

    async def periodic_declare_many(self, rows: Sequence[PeriodicDeclaration]) -> None:
        """Insert the declarations' rows, or update what changed; their last tick is kept."""
        ...

    async def periodic_fire_many(self, fires: Sequence[PeriodicFire]) -> list[PeriodicFired]:
        """Consume each tick newer than its row's last one and enqueue its job, in one write.

        Across processes each tick is consumed once: a tick not newer than the row's last
        one (fired by another process, or offered by a process whose clock is behind)
        changes nothing and is not reported.
        """
        ...

    async def periodic_list(self) -> list[PeriodicRow]:
        """Every row, by name, with the state of its last job."""
        ...

    async def periodic_delete(self, name: str) -> bool:
        """Forget a declaration's row; False when there was none."""
        ...


class LimitsStore(Protocol):
    """The global limits of queues, as the API sets and lists them."""

    schema: str

    async def queue_limit_set(self, limit: QueueLimit) -> QueueLimit:
        """Store a queue's limit (replacing its previous one); the limit as stored."""
        ...

    async def queue_limit_remove(self, queue: str) -> bool:
        """Drop a queue's limit and its rate window; False when it had none."""
        ...

    async def queue_limit_list(self) -> list[QueueLimit]:
        """Every queue's limit, by queue name."""
        ...


class RetentionStore(Protocol):
    """The run log's day partitions, and its retention by whole days (sql/012).

    A retention round reads its plan, creates the missing days, then drops what expired.
    The DDL steps take a ``lock_timeout`` in seconds and return None when a lock did not
    come in time (the log's readers held it): the next round tries again.
    """

    schema: str

    async def runs_retention_plan(
        self, now: dt.datetime | None, keep_s: float, keep_failed_s: float, days_ahead: int
    ) -> RetentionPlan:
        """The cutoffs, the days lacking partitions, what expired (see :class:`RetentionPlan`)."""
        ...

    async def runs_partitions_expired(
        self, done_before: dt.datetime, failed_before: dt.datetime
    ) -> list[str]:
        """The day partitions whose whole day is before their tree's cutoff, oldest first."""
        ...

    async def runs_partition_ensure(self, day: dt.date, lock_timeout: float) -> int | None:
        """Create ``day``'s partitions, moving its rows out of the DEFAULT ones; how many."""
        ...

    async def runs_partition_drop(self, partition: str, lock_timeout: float) -> int | None:
        """Drop an expired day partition; the failed runs it superseded, deleted beside it."""
        ...

    async def runs_defaults_expire(self, done_before: dt.datetime, failed_before: dt.datetime) -> int:
        """Delete the rows of expired days waiting in the DEFAULT partitions; how many."""
        ...


class WorkerBackend(WorkerStore, Notifications, PeriodicStore, RetentionStore, Protocol):
    """What a :class:`~pgqueue.Worker` opens: its stages' store and the listener's channel.

    The maintenance leader's duties write through it too (periodic ticks, partitions).
    """


class Store(
    EnqueueStore, WorkerBackend, ManageStore, AdminStore, PeriodicStore, LimitsStore, RetentionStore, Protocol
):
    """Every role: what ``Scheduler.open()`` returns."""
