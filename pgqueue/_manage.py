"""Job management behind the Scheduler's methods: look up, list, count, cancel in bulk.

Everything here reads or writes outside the worker's path (the hot table by primary key,
the run log by its job-id index), so a job nobody manages costs nothing more to schedule,
claim or finish. Arguments are checked before the database is touched; driver errors go
through the boundary's translation.

Listing is keyset pagination on the job id, newest first, with an opaque cursor: a page
holds the jobs below the cursor's id, so jobs scheduled while paging never appear (they
have higher ids) and a job that ends between two pages keeps its id and is seen once.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
from collections.abc import Awaitable, Callable, Sequence

from ._boundary import translated
from ._config import check_name
from ._enqueue import check_tenant
from ._errors import ConfigError, InvalidStateError, JobNotFound, check_delay
from ._records import (
    Activity,
    ActivityBucket,
    ActivityCounts,
    CancelCounts,
    JobRecord,
    JobState,
    JobStats,
    Page,
)
from .store import ManageStore

__all__ = [
    "DEFAULT_PAGE",
    "MAX_BUCKETS",
    "MAX_PAGE",
    "MIN_BUCKET_S",
    "Management",
    "activity_buckets",
    "check_id",
]

DEFAULT_PAGE = 50  # jobs per list_jobs page
MAX_PAGE = 500  # the largest page list_jobs serves
MAX_BUCKETS = 1440  # activity(): a day by the minute; more bars than a chart has pixels
MIN_BUCKET_S = 0.001  # activity(): run times are stored to the microsecond; bucket numbers fit a bigint
_TOP = 2**63 - 1  # "below" for the first page: above every bigint id
_CURSOR_PREFIX = "j1:"  # versions the cursor's format, so a future one can change it


def encode_cursor(last_id: int) -> str:
    """The opaque cursor that continues after the job ``last_id``."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The id a cursor continues below; ConfigError for anything list_jobs did not return."""
    if cursor is None:
        return _TOP
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if text.startswith(_CURSOR_PREFIX):
            value = int(text.removeprefix(_CURSOR_PREFIX))
            if 0 < value <= _TOP:
                return value
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    raise ConfigError(f"cursor {cursor!r} is not one that list_jobs returned")


def check_id(job_id: object) -> int:
    if isinstance(job_id, bool) or not isinstance(job_id, int):
        raise ConfigError(f"job_id must be an integer, got {job_id!r}")
    return job_id


def _check_filters(queue: str | None, type_: str | None) -> None:
    for kind, name in (("queue", queue), ("job type", type_)):
        if name is not None:
            check_name(kind, name)


def activity_buckets(window_s: float, bucket_s: float) -> int:
    """How many buckets activity() returns for this window; ConfigError for bad arguments.

    Both are positive seconds (at most a century), the bucket at least a millisecond and no
    longer than the window, and the window at most :data:`MAX_BUCKETS` buckets. A window
    that is not a whole number of buckets is rounded up to one.
    """
    window = check_delay(window_s, "window_s")
    bucket = check_delay(bucket_s, "bucket_s")
    if window <= 0 or bucket <= 0:
        raise ConfigError(f"window_s and bucket_s must be positive, got {window_s!r} and {bucket_s!r}")
    if bucket < MIN_BUCKET_S:
        raise ConfigError(f"bucket_s must be at least {MIN_BUCKET_S} seconds, got {bucket_s!r}")
    if bucket > window:
        raise ConfigError(f"bucket_s ({bucket_s!r}) must not exceed window_s ({window_s!r})")
    count = math.ceil(window / bucket - 1e-9)  # 3600 / 60 is 60 buckets, not 61 by a rounding
    if count > MAX_BUCKETS:
        raise ConfigError(
            f"window_s / bucket_s must be at most {MAX_BUCKETS} buckets, got {count}: use larger buckets"
        )
    return count


def _not_found(job_id: int) -> JobNotFound:
    return JobNotFound(f"job {job_id} not found: no live job has this id and no run of it was logged")


def _check_state(state: JobState | str | None) -> JobState | None:
    if state is None:
        return None
    try:
        return JobState(state)
    except ValueError:
        known = ", ".join(s.value for s in JobState)
        raise ConfigError(f"unknown job state {state!r} (states: {known})") from None


class Management:
    """The management calls of one scheduler, on the store its ``open`` returns."""

    def __init__(
        self,
        open_store: Callable[[], Awaitable[ManageStore]],
        schema: str,
        suspendable: Callable[[], list[str]] = list,
    ) -> None:
        self._open = open_store
        self._schema = schema
        self._suspendable = suspendable

    async def get_job(self, job_id: int) -> JobRecord:
        """The job, live or finished, with its runs; JobNotFound when nothing knows the id."""
        check_id(job_id)
        async with translated("get_job", self._schema):
            record = await (await self._open()).job_get(job_id)
        if record is None:
            raise _not_found(job_id)
        return record

    async def list_jobs(
        self,
        *,
        state: JobState | str | None,
        queue: str | None,
        type_: str | None,
        limit: int,
        cursor: str | None,
        tenant: str | None = None,
    ) -> Page:
        """A page of jobs (``limit`` from 1 to 500), newest first, below ``cursor``'s job.

        Filters combine; a finished job is filtered by how its last run ended (and by the
        tenant its runs carry). Items carry their runs, as get_job's do.
        """
        wanted = _check_state(state)
        _check_filters(queue, type_)
        if tenant is not None:
            check_tenant(tenant)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise ConfigError(f"limit must be an integer from 1 to {MAX_PAGE}, got {limit!r}")
        below = decode_cursor(cursor)
        async with translated("list_jobs", self._schema):
            items = await (await self._open()).job_list(
                below=below, queue=queue, type_=type_, state=wanted, limit=limit + 1, tenant=tenant
            )
        page = tuple(items[:limit])  # one more was read only to know whether a next page exists
        return Page(page, encode_cursor(page[-1].id) if len(items) > limit else None)

    async def queue_depth(self, queue: str | None) -> int:
        """Pending jobs (due now, not claimed) in ``queue``, or in every queue."""
        if queue is not None:
            check_name("queue", queue)
        counts = await self._counts()
        return sum(n for q, _, s, n in counts if s is JobState.PENDING and (queue is None or q == queue))

    async def stats(self, tenant: str | None = None) -> JobStats:
        """Live jobs (of ``tenant``, when given) by queue × state and by type × state."""
        if tenant is not None:
            check_tenant(tenant)
        by_queue: dict[str, dict[JobState, int]] = {}
        by_type: dict[str, dict[JobState, int]] = {}
        for queue, type_, state, n in await self._counts(tenant):
            for table, key in ((by_queue, queue), (by_type, type_)):
                row = table.setdefault(key, dict.fromkeys(_LIVE, 0))
                row[state] += n
        return JobStats(by_queue, by_type)

    async def cancel_many(self, *, queue: str | None, type_: str | None) -> CancelCounts:
        """Cancel every live job of ``queue`` and/or ``type_``; one filter at least."""
        if queue is None and type_ is None:
            raise ConfigError("cancel_many needs queue= or type= (or both)")
        _check_filters(queue, type_)
        async with translated("cancel_many", self._schema):
            return await (await self._open()).job_cancel_many(queue, type_)

    async def retry(self, job_id: int) -> None:
        """Put a failed or cancelled job back, due now, under its own id (see the README)."""
        await self._transition(job_id, "retry", lambda s: s.job_retry_many([job_id], None, None, _RETRYABLE))

    async def retry_many(
        self, *, queue: str | None, type_: str | None, ids: Sequence[int] | None = None
    ) -> list[int]:
        """Put every failed job of ``queue`` and/or ``type_`` (among ``ids``) back; the ids, ascending."""
        _check_filters(queue, type_)
        if ids is not None:
            ids = list(ids)
            for job_id in ids:
                check_id(job_id)
        async with translated("retry_many", self._schema):
            return await (await self._open()).job_retry_many(ids, queue, type_, (JobState.FAILED,))

    async def delete(self, job_id: int) -> None:
        """Remove a pending, scheduled or suspended job; its logged runs stay."""
        await self._transition(job_id, "delete", lambda s: s.job_delete(job_id))

    async def suspend(self, job_id: int) -> None:
        """Take a pending or scheduled job out of the queue until resume().

        A running job of a suspendable type is asked to stop at its next checkpoint.
        """
        types = self._suspendable()

        async def change(store: ManageStore) -> bool:
            return await store.job_suspend(job_id) or bool(
                types and await store.job_request_suspend(job_id, types)
            )

        await self._transition(job_id, "suspend", change)

    async def resume(self, job_id: int) -> None:
        """Put a suspended job back in the queue (due at its run_at, or now)."""
        await self._transition(job_id, "resume", lambda s: s.job_resume(job_id))

    async def activity(self, *, window_s: float, bucket_s: float) -> Activity:
        """Runs that ended in the last ``window_s`` seconds, in ``bucket_s`` buckets and per queue."""
        count = activity_buckets(window_s, bucket_s)
        bucket = float(bucket_s)
        async with translated("activity", self._schema):
            rows = await (await self._open()).job_runs_activity(bucket, count)
        slots = [ActivityCounts()] * count
        by_queue: dict[str, ActivityCounts] = {}
        for index, queue, counts in rows.counts:
            i = min(max(index, 0), count - 1)  # a float rounding at a bucket's edge stays inside
            slots[i] += counts
            by_queue[queue] = by_queue.get(queue, ActivityCounts()) + counts
        step = dt.timedelta(seconds=bucket)
        buckets = tuple(ActivityBucket(rows.since + i * step, c) for i, c in enumerate(slots))
        return Activity(rows.since, rows.until, bucket, buckets, dict(sorted(by_queue.items())))

    async def _transition(
        self, job_id: int, action: str, change: Callable[[ManageStore], Awaitable[object]]
    ) -> None:
        """Apply ``change``; when it changed nothing, say why: the job's state, or not found."""
        check_id(job_id)
        async with translated(action, self._schema):
            store = await self._open()
            if await change(store):
                return
            record = await store.job_get(job_id)
        if record is None:
            raise _not_found(job_id)
        raise InvalidStateError(job_id, record.state.value, action)

    async def _counts(self, tenant: str | None = None) -> list[tuple[str, str, JobState, int]]:
        async with translated("stats", self._schema):
            return await (await self._open()).job_stats(tenant)


_LIVE = (JobState.PENDING, JobState.SCHEDULED, JobState.RUNNING, JobState.SUSPENDED, JobState.WAITING)
_RETRYABLE = (JobState.FAILED, JobState.CANCELLED)
