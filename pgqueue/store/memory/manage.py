"""Cancel and job management of the memory store (the management statements' roles)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from pgqueue._models import CancelResult
from pgqueue._records import ActivityCounts, CancelCounts, JobRecord, JobState
from pgqueue.store import ActivityRows
from pgqueue.store.records import Edges, job_record

from .base import MemoryBase
from .rows import (
    CANCEL_NOTE,
    FAILED_OUTCOMES,
    LIVE_STATES,
    SUSPENDED,
    LiveJob,
    LoggedRun,
    end_state,
    to_datetime,
)

__all__ = ["ManageMixin"]


class ManageMixin(MemoryBase):
    """Look up, list, count, cancel, retry, delete, suspend and resume jobs."""

    # -- cancel, management ---------------------------------------------------------------

    def _flag_cancel(self, ids: Iterable[int]) -> None:
        for job_id in ids:
            job = self.jobs.get(job_id)
            if job is not None and (job.worker_id or 0) > 0:
                job.cancel_requested = True
                self.notify(f"c:{job_id}")

    async def job_cancel(self, job_id: int) -> CancelResult:
        """End an unheld job as cancelled, or flag a claimed one and tell its worker."""
        job = self.jobs.get(job_id)
        if job is None:
            return CancelResult.NOT_FOUND
        if (job.worker_id or 0) <= 0:
            self._cancel_unheld([job_id], CANCEL_NOTE)
            return CancelResult.CANCELLED
        self._flag_cancel([job_id])
        return CancelResult.CANCELLING

    async def job_cancel_many(self, queue: str | None, type_: str | None) -> CancelCounts:
        """Cancel every live job of ``queue`` and/or ``type_``."""
        matching = sorted(
            j.id for j in self.jobs.values() if queue in (None, j.queue) and type_ in (None, j.type)
        )
        held = [i for i in matching if (self.jobs[i].worker_id or 0) > 0]
        unheld = [i for i in matching if i not in held]
        cancelled = self._cancel_unheld(unheld, CANCEL_NOTE)
        self._flag_cancel(held)
        return CancelCounts(cancelled=cancelled, cancelling=len(held))

    def _live_row(self, job: LiveJob, now: float) -> dict[str, Any]:
        return {
            "id": job.id,
            "queue": job.queue,
            "type": job.type,
            "params": job.params,
            "priority": job.priority,
            "attempt": job.attempt,
            "errors": job.errors,
            "last_error": job.last_error,
            "inserted_at": to_datetime(job.inserted_at),
            "run_at": to_datetime(job.run_at),
            "claimed_at": None if job.claimed_at is None else to_datetime(job.claimed_at),
            "progress": job.progress,
            "progress_message": job.progress_message,
            "suspend_requested": job.suspend_requested,
            "checkpoint": job.checkpoint,
            "tenant": job.tenant,
            "state": job.state(now),
        }

    def _edges(self, ids: Iterable[int]) -> Edges:
        pairs: set[tuple[int, int]] = set()
        for i in ids:
            pairs.update((i, d) for d in self._deps.get(i, ()))
            pairs.update((d, i) for d in self._dependents.get(i, ()))
        return Edges(sorted(pairs))

    def _record(self, job_id: int, now: float, edges: Edges, *, with_log: bool = True) -> JobRecord | None:
        job = self.jobs.get(job_id)
        runs = [r.row(with_log=with_log) for r in self.runs.get(job_id, ())]
        return job_record(job_id, None if job is None else self._live_row(job, now), runs, edges)

    async def job_get(self, job_id: int) -> JobRecord | None:
        """A live or finished job with its runs."""
        return self._record(job_id, self.clock.time(), self._edges([job_id]))

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
        now = self.clock.time()
        found: list[int] = []
        for job_id in sorted({*self.jobs, *self.runs}, reverse=True):
            if job_id >= below:
                continue
            job = self.jobs.get(job_id)
            if job is not None:
                fields, current = (job.queue, job.type, job.tenant), job.state(now)
            else:
                last = self.runs[job_id][-1]
                fields, current = (last.queue, last.type, last.tenant), end_state(last)
                if current == "gone":
                    continue
            wanted = (queue, type_, tenant)
            if any(w not in (None, have) for w, have in zip(wanted, fields, strict=True)):
                continue
            if state is not None and current != state.value:
                continue
            found.append(job_id)
            if len(found) == limit:
                break
        edges = self._edges(found)
        records = [self._record(i, now, edges, with_log=False) for i in found]  # as PostgreSQL's pages
        return [r for r in records if r is not None]

    async def job_stats(self, tenant: str | None = None) -> list[tuple[str, str, JobState, int]]:
        """Live jobs (of ``tenant``, when given) counted by (queue, type, state)."""
        now = self.clock.time()
        counts: dict[tuple[str, str], dict[JobState, int]] = {}
        for job in self.jobs.values():
            if tenant is not None and job.tenant != tenant:
                continue
            row = counts.setdefault((job.queue, job.type), dict.fromkeys(LIVE_STATES, 0))
            row[JobState(job.state(now))] += 1
        return [(q, t, s, n) for (q, t), row in counts.items() for s, n in row.items()]

    async def job_retry_many(
        self, ids: Sequence[int] | None, queue: str | None, type_: str | None, states: Sequence[JobState]
    ) -> list[int]:
        """Put finished jobs whose last run ended in ``states`` back, due now, under their ids."""
        wanted = {s.value for s in states}
        now = self.clock.time()
        back: list[int] = []
        for job_id in sorted(self.runs if ids is None else ids):
            runs = self.runs.get(job_id)
            if job_id in self.jobs or not runs:
                continue
            last = runs[-1]
            if (
                queue not in (None, last.queue)
                or type_ not in (None, last.type)
                or end_state(last) not in wanted
            ):
                continue
            self.jobs[job_id] = LiveJob(
                id=job_id,
                queue=last.queue,
                type=last.type,
                params=last.params,
                run_at=now,
                inserted_at=last.inserted_at,
                priority=last.priority,
                timeout_s=None,
                delayed=False,
                attempt=last.attempt,
                attempt_base=last.attempt,
                last_error=next((r.error for r in reversed(runs) if r.outcome in FAILED_OUTCOMES), None),
                tenant=last.tenant,
            )
            self._queue_up(self.jobs[job_id])
            back.append(job_id)
        for q in sorted({self.jobs[i].queue for i in back}):
            self.notify(f"r:{q}")
        return back

    async def job_delete(self, job_id: int) -> bool:
        """Remove an unheld live job; its runs stay and its dependents are cancelled."""
        job = self.jobs.get(job_id)
        if job is None or (job.worker_id or 0) > 0:
            return False
        job.unique_key = None  # deleting is no end: the key is freed
        self._end([(job, "deleted")])
        return True

    async def job_suspend(self, job_id: int) -> bool:
        """Take a pending or scheduled job out of the queue."""
        job = self.jobs.get(job_id)
        if job is None or job.worker_id is not None:
            return False
        job.worker_id, job.suspend_requested = SUSPENDED, False
        return True

    async def job_request_suspend(self, job_id: int, types: Sequence[str]) -> bool:
        """Flag a running job of a suspendable type and tell its worker."""
        job = self.jobs.get(job_id)
        if job is None or (job.worker_id or 0) <= 0 or job.type not in types:
            return False
        job.suspend_requested = True
        self.notify(f"s:{job_id}")
        return True

    async def job_resume(self, job_id: int) -> bool:
        """Make a suspended job claimable again and tell its queue."""
        job = self.jobs.get(job_id)
        if job is None or job.worker_id != SUSPENDED:
            return False
        job.worker_id, job.delayed, job.suspend_requested = None, True, False
        self._queue_up(job)
        self._tell_queue(job.queue, job.run_at)
        return True

    async def job_await(self, job_id: int) -> bool:
        """Mark a live job so that its end is announced ('e:<id>')."""
        job = self.jobs.get(job_id)
        if job is None:
            return False
        job.awaited = True
        return True

    async def job_runs_activity(self, bucket_s: float, buckets: int) -> ActivityRows:
        """Runs that ended in the last ``buckets`` buckets, by (bucket index, queue), as runs.sql counts."""
        now = self.clock.time()
        first = math.floor(now / bucket_s) - (buckets - 1)
        since = first * bucket_s
        cells: dict[tuple[int, str], ActivityCounts] = {}
        for runs in self.runs.values():
            for run in runs:
                if not since <= run.finished_at <= now:
                    continue
                kind = _kind(run)
                if kind is None:
                    continue
                key = (math.floor(run.finished_at / bucket_s) - first, run.queue)
                cells[key] = cells.get(key, ActivityCounts()) + kind
        counts = [(b, q, c) for (b, q), c in sorted(cells.items())]
        return ActivityRows(since=to_datetime(since), until=to_datetime(now), counts=counts)


_ONE = {
    "succeeded": ActivityCounts(succeeded=1),
    "cancelled": ActivityCounts(cancelled=1),
    "failed": ActivityCounts(failed=1),
    "retried": ActivityCounts(retried=1),
}


def _kind(run: LoggedRun) -> ActivityCounts | None:
    """One run's count, as the FILTER clauses of ``job_runs_activity`` sort it; None: no outcome."""
    if run.retry_at is None:
        return _ONE[end_state(run)]
    return _ONE["retried"] if run.outcome in FAILED_OUTCOMES else None
