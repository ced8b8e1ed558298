"""Enqueue, claims and flushes of the memory store (``jobs.sql`` and ``runs.sql``'s roles)."""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Sequence

from pgqueue._models import Row
from pgqueue.store.batch import FinalizeResult, FlushBatch, NewJobs, ProgressReport

from .base import MemoryBase
from .rows import (
    END_STATES,
    SUSPENDED,
    WAITING,
    LiveJob,
    as_real,
    end_state,
    to_datetime,
)

__all__ = ["JobsMixin"]


class JobsMixin(MemoryBase):
    """Insert, claim, finalize, release and progress, as the PostgreSQL store's statements do."""

    # -- enqueue -------------------------------------------------------------------------

    async def job_insert(self, conn: object, jobs: NewJobs, params: str) -> int:  # noqa: ARG002 - conn: see the module
        """Store one job and tell its queue: a job due now by its id, as job_insert does."""
        job = self._new_job(jobs, params)
        if job.delayed:
            self._tell_queue(job.queue, job.run_at)
        else:
            self.notify(f"j:{job.id}:{job.queue}")
        return job.id

    async def job_insert_many(
        self,
        conn: object,  # noqa: ARG002
        jobs: NewJobs,
        params: list[str],
        tenants: Sequence[str | None] | None = None,
    ) -> list[int]:
        """Store jobs of one type and queue; one notification for the lot."""
        each = list(tenants or ())
        each += [None] * (len(params) - len(each))  # as unnest pads the shorter array
        made = [self._new_job(jobs, p, t) for p, t in zip(params, each, strict=True)]
        if made:
            self._tell_queue(jobs.queue, min(j.run_at for j in made))
        return [j.id for j in made]

    def _key_holder(self, key: str) -> int | None:
        now = self.clock.time()
        kept = self._kept_keys.get(key)
        if kept is not None and kept[1] <= now:
            del self._kept_keys[key]
            kept = None
        live = next((j.id for j in self.jobs.values() if j.unique_key == key), None)
        return live if live is not None else (kept[0] if kept else None)

    async def job_insert_unique(
        self,
        conn: object,  # noqa: ARG002
        jobs: NewJobs,
        params: str,
        *,
        key: str,
        keep_s: float,
        keep_after: Sequence[str],
    ) -> tuple[int, bool]:
        """The job that holds ``key``, or a new one holding it: (id, inserted)."""
        holder = self._key_holder(key)
        if holder is not None:
            return holder, False
        job = self._new_job(jobs, params)
        job.unique_key, job.unique_hold, job.unique_ends = key, keep_s, tuple(keep_after)
        self._tell_queue(job.queue, job.run_at)
        return job.id, True

    async def job_by_key(self, key: str) -> int | None:
        """The id of the job that holds ``key``."""
        return self._key_holder(key)

    async def job_insert_dependent(
        self,
        conn: object,  # noqa: ARG002 - see the module: no transactions
        jobs: NewJobs,
        params: str,
        depends_on: Sequence[int],
    ) -> tuple[int | None, dict[int, str]]:
        """A job waiting on ``depends_on``, or the dependencies that stand in the way."""
        live = [d for d in depends_on if d in self.jobs]
        blocked = {}
        for dep in depends_on:
            if dep not in self.jobs:
                runs = self.runs.get(dep)
                state = end_state(runs[-1]) if runs else "gone"
                if state != "succeeded":
                    blocked[dep] = state
        if blocked:
            return None, blocked
        for dep in live:
            self.jobs[dep].has_dependents = True
        job = self._new_job(jobs, params)
        self._deps[job.id] = list(depends_on)
        for dep in depends_on:
            self._dependents.setdefault(dep, []).append(job.id)
        if live:
            job.worker_id, job.waiting_on = WAITING, len(live)
        else:
            self._tell_queue(job.queue, job.run_at)
        return job.id, {}

    # -- claims and flushes ---------------------------------------------------------------

    async def job_claim_many(
        self,
        queues: Sequence[str],
        limit: int,
        worker_id: int,
        held: object = None,  # noqa: ARG002
    ) -> list[Row]:
        """Claim up to ``limit`` due jobs in (priority, run_at, id) order; rows as ROW_*."""
        if worker_id not in self._workers:
            return []  # reaped or never registered: claims nothing, as the claim's lock does
        now = self.clock.time()
        due: list[LiveJob] = []
        while len(due) < limit and (job := self._take(queues, now)) is not None:
            job.worker_id = worker_id  # claimed now: another entry of the same job is stale at once
            due.append(job)
        return self._mark_claimed(due, worker_id, now)

    @staticmethod
    def _mark_claimed(jobs: list[LiveJob], worker_id: int, now: float) -> list[Row]:
        """Make ``jobs`` this worker's at their next attempt, as the claim's update does."""
        for j in jobs:
            j.worker_id, j.attempt, j.delayed, j.claimed_at = worker_id, j.attempt + 1, False, now
        return [j.claim_row() for j in jobs]

    async def job_claim_announced(
        self,
        ids: Sequence[int],
        queues: Sequence[str],
        limit: int,
        worker_id: int,
        held: object = None,  # noqa: ARG002
    ) -> list[Row]:
        """Claim those of ``ids`` still ready (not delayed) in ``queues``, in claim order."""
        wanted = set(queues) if worker_id in self._workers else set()  # unregistered: claims nothing
        ready = [
            job
            for i in set(ids)
            if (job := self.jobs.get(i)) is not None
            and job.queue in wanted
            and job.worker_id is None
            and not job.delayed
        ]
        ready.sort(key=lambda j: (j.priority, j.run_at, j.id))
        rows = self._mark_claimed(ready[:limit], worker_id, self.clock.time())
        for q in {j.queue for j in ready[:limit]}:  # their index entries are stale now: drop those on top
            heap = self._ready.get(q)
            while heap and self._claimable(heap[0][2], heap[0][1]) is None:
                heapq.heappop(heap)
        return rows

    async def job_next_due(self, queues: Sequence[str], held: object = None) -> float | None:  # noqa: ARG002
        """Seconds until the next delayed job in these queues is due."""
        wanted = set(queues)
        times = [
            j.run_at for j in self.jobs.values() if j.queue in wanted and j.worker_id is None and j.delayed
        ]
        return min(times) - self.clock.time() if times else None

    async def job_finalize_many(
        self,
        worker_id: int,
        batch: FlushBatch,
        held: object = None,  # noqa: ARG002 - no connections to hold
        *,
        clock_offset: float = 0.0,
    ) -> FinalizeResult:
        """One flush: end and put back jobs this worker holds at those attempts; log their runs."""
        now = self.clock.time()
        ended: set[int] = set()
        gone: list[tuple[LiveJob, str]] = []
        put_back: dict[int, dt.datetime] = {}
        logged = 0
        b = batch
        for i, job_id in enumerate(b.end_ids):
            job = self.jobs.get(job_id)
            if job is None or job.worker_id != worker_id or job.attempt != b.end_attempts[i]:
                continue
            outcome = (b.end_outcomes[i] if i < len(b.end_outcomes) else None) or "succeeded"
            log = b.end_log[i] if i < len(b.end_log) else None
            ended.add(job_id)
            if log is not False:
                self._log(
                    job,
                    worker_id=worker_id,
                    run_at=job.run_at,
                    started_at=b.end_started[i] + clock_offset,
                    finished_at=b.end_finished[i] + clock_offset,
                    retry_at=None,
                    attempt=job.attempt,
                    outcome=outcome,
                    error=b.end_errors[i] if i < len(b.end_errors) else None,
                    result=b.end_results[i] if i < len(b.end_results) else None,
                    log=b.end_lines[i] if i < len(b.end_lines) else None,
                )
                logged += 1
            gone.append((job, END_STATES.get(outcome, "failed")))
        self._end(gone)
        for i, job_id in enumerate(b.back_ids):
            job = self.jobs.get(job_id)
            if job is None or job.worker_id != worker_id or job.attempt != b.back_attempts[i]:
                continue
            outcome = b.back_outcomes[i]
            retry_at = b.back_retry_at[i]
            job.worker_id = SUSPENDED if outcome == "suspended" or job.suspend_requested else None
            job.suspend_requested = False
            job.delayed = True
            job.lease_until = None
            job.run_at = retry_at.timestamp() if retry_at is not None else now + b.back_delay[i]
            if job.worker_id is None:
                self._queue_up(job)
            job.errors += b.back_error_inc[i]
            job.attempt_base += outcome in ("snoozed", "suspended")
            if outcome not in ("snoozed", "interrupted", "suspended"):
                job.last_error = b.back_errors[i] or job.last_error
            job.progress = job.progress_message = None
            checkpoint = b.back_checkpoint[i] if i < len(b.back_checkpoint) else None
            job.checkpoint = checkpoint or job.checkpoint
            put_back[job_id] = to_datetime(job.run_at)
            if b.back_log[i]:
                self._log(
                    job,
                    worker_id=worker_id,
                    run_at=b.back_due_at[i],
                    started_at=b.back_started[i] + clock_offset,
                    finished_at=b.back_finished[i] + clock_offset,
                    retry_at=job.run_at,
                    attempt=job.attempt,
                    outcome=outcome,
                    error=b.back_errors[i],
                    log=b.back_lines[i] if i < len(b.back_lines) else None,
                )
                logged += 1
        due_in = min((at.timestamp() for at in put_back.values()), default=None)
        return FinalizeResult(
            frozenset(ended), put_back, logged, None if due_in is None else due_in - self.clock.time()
        )

    async def job_release_many(self, worker_id: int, ids: Sequence[int]) -> int:
        """Hand back claimed jobs that never started, without counting the claim."""
        found = (self.jobs.get(i) for i in dict.fromkeys(ids))
        back = [j for j in found if j is not None and j.worker_id == worker_id]
        for j in back:
            j.attempt, j.delayed = j.attempt - 1, False
        return self._hand_back_all(back)

    async def job_progress_many(self, worker_id: int, reports: Sequence[ProgressReport]) -> None:
        """Keep the latest progress of jobs this worker runs at those attempts.

        The fraction is kept as the ``real`` column keeps it (a 4-byte float): 0.4 reads
        back as 0.4000000059604645, as on PostgreSQL.
        """
        for r in reports:
            job = self.jobs.get(r.job_id)
            if job is not None and job.worker_id == worker_id and job.attempt == r.attempt:
                job.progress, job.progress_message = as_real(r.fraction), r.message

    async def job_cancel_requested_many(self, ids: Sequence[int]) -> dict[int, bool]:
        """Which of these jobs were flagged by cancel() (True) or, if not, by suspend() (False)."""
        jobs = (self.jobs.get(i) for i in ids)
        return {j.id: j.cancel_requested for j in jobs if j and (j.cancel_requested or j.suspend_requested)}
