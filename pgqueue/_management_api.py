"""The job-management methods of :class:`~pgqueue.Scheduler`.

Thin calls into ``_manage.py`` and ``_waiting.py``, each documented where users read it.
A mixin of its own so the Scheduler module holds what a scheduler is (registration,
scheduling, workers, its backend) and this one the management API around it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from ._boundary import translated
from ._config import check_name
from ._errors import ConfigError, JobNotFound, WorkerNotFound
from ._manage import DEFAULT_PAGE, Management, check_id
from ._models import CancelResult
from ._records import Activity, CancelCounts, JobRecord, JobState, JobStats, Page, WorkerInfo
from ._waiting import Waiters
from .store import Store

__all__ = ["JobManagement"]

MAX_ID = 2**63 - 1  # a bigint: a larger id names no worker (and must not reach the driver)


class JobManagement:
    """Look up, list, count, cancel, retry, delete, suspend, resume and wait for jobs."""

    schema: str
    _manage: Management
    _waiters: Waiters
    open: Callable[[], Awaitable[Store]]
    _open: Callable[[], Awaitable[Store]]

    async def cancel(self, job_id: int) -> CancelResult:
        """Cancel a job: a waiting one ends at once, a running one is interrupted by its worker.

        Either way the job ends with a ``cancelled`` run and is not retried. A job that ends
        before its worker hears of the cancel keeps its real outcome.
        """
        check_id(job_id)
        async with translated("cancel", self.schema):
            return await (await self.open()).job_cancel(job_id)

    async def get_job(self, job_id: int) -> JobRecord:
        """The job with this id, live or finished, with its state and logged runs.

        Raises :class:`JobNotFound` when no live job has the id and no run of it was logged.
        """
        return await self._manage.get_job(job_id)

    async def wait(self, job_id: int, timeout: float | None = None) -> JobRecord:  # noqa: ASYNC109 - the documented API: a job's deadline, not a cancel scope
        """The job's record once it has ended (notified, never polled); see ``_waiting.py``."""
        return await self._waiters.wait(job_id, timeout)

    async def list_jobs(
        self,
        *,
        state: JobState | str | None = None,
        queue: str | None = None,
        type: str | None = None,  # noqa: A002 - the job type's name, as in schedule()
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
        tenant: str | None = None,
    ) -> Page:
        """One page of jobs, live and finished, newest first (see :meth:`Management.list_jobs`).

        ``tenant``: only the jobs scheduled with that tenant.
        """
        return await self._manage.list_jobs(
            state=state, queue=queue, type_=type, limit=limit, cursor=cursor, tenant=tenant
        )

    async def queue_depth(self, queue: str | None = None) -> int:
        """Jobs due now and waiting for a worker (state ``pending``), in ``queue`` or all queues."""
        return await self._manage.queue_depth(queue)

    async def stats(self, *, tenant: str | None = None) -> JobStats:
        """Live jobs counted by queue and state, and by type and state (of ``tenant``, when given)."""
        return await self._manage.stats(tenant)

    async def activity(self, *, window_s: float = 3600.0, bucket_s: float = 60.0) -> Activity:
        """Runs that ended in the last ``window_s`` seconds, counted per ``bucket_s`` and per queue.

        Succeeded, failed for good, retried and cancelled runs (see :class:`ActivityCounts`),
        read from the run log's recent end (its ``finished_at`` index), whatever its length.
        Buckets are aligned on multiples of ``bucket_s`` (see :class:`Activity`); at most
        1,440 of them. ConfigError for a non-positive window, a bucket under a millisecond
        or longer than the window.
        """
        return await self._manage.activity(window_s=window_s, bucket_s=bucket_s)

    async def list_workers(self) -> list[WorkerInfo]:
        """The registered workers and pull consumers, oldest first, as :class:`WorkerInfo`.

        Each carries its id, host, pid, queues, kind, concurrency, start, last heartbeat and
        the jobs it holds now. The held jobs are counted by one grouped scan of the hot table
        for all workers (``jobs`` has no index on ``worker_id``, so that claims never pay for
        one): fine for an admin call or a dashboard refresh, not for a tight loop.
        """
        async with translated("list_workers", self.schema):
            return await (await self._open()).worker_list()

    async def workers(self) -> list[WorkerInfo]:
        """The same list as :meth:`list_workers`, under its first name."""
        return await self.list_workers()

    async def remove_worker(self, worker_id: int, *, force: bool = False) -> int:
        """Remove a worker's row; returns the number of jobs released (0 without ``force``).

        For the row of a worker that is gone (or stuck) without waiting for the reaper.
        While the worker holds jobs it raises :class:`WorkerHasActiveJobs` (``.held``),
        unless ``force=True``: its jobs are then released exactly as reaping releases a dead
        worker's (a ``crashed`` run each, the attempt counted, claimable again at once, their
        queues told). An unknown id raises :class:`WorkerNotFound`. Refused, it changes
        nothing. A live worker whose row was removed finds out at its next heartbeat, as a
        reaped one does: it interrupts what it runs and registers again under a new id.
        """
        if isinstance(worker_id, bool) or not isinstance(worker_id, int):
            raise ConfigError(f"worker_id must be an integer, got {worker_id!r}")
        if not isinstance(force, bool):
            raise ConfigError(f"force must be True or False, got {force!r}")
        if not 1 <= worker_id <= MAX_ID:
            raise WorkerNotFound(f"no registered worker has id {worker_id}")
        async with translated("remove_worker", self.schema):
            return await (await self._open()).worker_remove(worker_id, force=force)

    async def retry(self, job_id: int) -> None:
        """Run a failed or cancelled job again now, same id, runs numbered on, budget afresh."""
        await self._manage.retry(job_id)

    async def retry_many(
        self,
        *,
        queue: str | None = None,
        type: str | None = None,  # noqa: A002 - the job type's name, as in schedule()
        ids: Sequence[int] | None = None,
    ) -> list[int]:
        """Run every failed job of ``queue`` and/or ``type`` (or all) again; returns their ids.

        ``ids`` narrows it to those jobs (the CLI retries a large set in chunks this way);
        an id that is not a failed job is left alone.
        """
        return await self._manage.retry_many(queue=queue, type_=type, ids=ids)

    async def delete(self, job_id: int) -> None:
        """Remove a waiting or suspended job (its logged runs stay); else :class:`InvalidStateError`."""
        await self._manage.delete(job_id)

    async def suspend(self, job_id: int) -> None:
        """Take a pending or scheduled job out of the queue until :meth:`resume`.

        A running job of a type registered ``suspendable=True`` is asked to stop at its next
        checkpoint (``job.suspend_requested``); it stays ``running`` until it does.
        """
        await self._manage.suspend(job_id)

    async def resume(self, job_id: int) -> None:
        """Put a suspended job back in the queue, due at its run_at (or now)."""
        await self._manage.resume(job_id)

    async def cancel_many(self, *, queue: str | None = None, type: str | None = None) -> CancelCounts:  # noqa: A002 - the job type's name, as in schedule()
        """Cancel every live job of ``queue`` and/or ``type`` (one at least), as :meth:`cancel`."""
        return await self._manage.cancel_many(queue=queue, type_=type)

    async def get_job_by_key(self, key: str) -> JobRecord:
        """The job that holds a unique key (live, or kept after its success); else JobNotFound."""
        check_name("unique_key", key)
        async with translated("get_job_by_key", self.schema):
            job_id = await (await self._open()).job_by_key(key)
        if job_id is None:
            raise JobNotFound(f"no job holds the unique key {key!r}")
        return await self.get_job(job_id)
