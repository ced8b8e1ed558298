"""The in-memory store: every store role in Python data structures, for applications' tests.

It keeps the PostgreSQL store's contract (the queries' ``why`` comments are the spec) so
that a :class:`~pgqueue.Scheduler` on it, and the real :class:`~pgqueue.Worker` with its
runner, retry filters and verdicts, behave as they do on PostgreSQL: the decision code is
shared, and only the storage is here. The contract suite (``tests/contract``) runs the same
behavioural tests on both backends.

What it cannot honour, by design:

- **One process.** Jobs live in this process's memory: other processes (a ``pgqueue
  worker`` command) never see them, and nothing survives the process.
- **No crash rescue.** Workers share the process, and a stopped worker hands its jobs
  back as it stops, so there is no dead worker to reap: ``worker_reap`` does nothing.
- **No transactions.** ``schedule(conn=...)`` is accepted and ignored: the job is stored at
  once, whatever becomes of the caller's transaction.
- **Time** is a :class:`MemoryClock`: the wall clock plus an offset that
  :meth:`MemoryStore.advance` moves forward, so delayed jobs and retries become due at
  once in a test, and due jobs' queues are told as a notification would.

Notifications are in-process: a payload reaches every subscriber on the next turn of the
event loop, as PostgreSQL delivers them after the commit. It needs no server, no socket
and no network.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import heapq
import itertools
import os
import socket
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pgqueue._models import CancelResult, Row
from pgqueue._records import CancelCounts, JobRecord, JobState, WorkerInfo

from .batch import FinalizeResult, FlushBatch, NewJobs, ProgressReport
from .records import Edges, job_record

__all__ = ["MEMORY_SCHEMA", "MemoryClock", "MemoryStore"]

MEMORY_SCHEMA = "memory"  # what the in-memory store answers for its schema name
CANCEL_NOTE = "cancelled before it ran"  # as the PostgreSQL store's
WAITING, SUSPENDED = -1, 0  # the lock values of jobs no worker holds (as in jobs.sql)
_UTC = dt.UTC


def _at(epoch: float) -> dt.datetime:
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
class _Job:
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
class _Run:
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

    def row(self) -> dict[str, Any]:
        """The row as job_runs_get_many returns it."""
        return {
            "job_id": self.job_id,
            "attempt": self.attempt,
            "outcome": self.outcome,
            "worker_id": self.worker_id,
            "run_at": _at(self.run_at),
            "started_at": _at(self.started_at),
            "finished_at": _at(self.finished_at),
            "retry_at": None if self.retry_at is None else _at(self.retry_at),
            "error": self.error,
            "result": self.result,
            "queue": self.queue,
            "type": self.type,
            "params": self.params,
            "priority": self.priority,
            "inserted_at": _at(self.inserted_at),
        }


def _real(value: float) -> float:
    """``value`` as PostgreSQL's ``real`` stores it: the nearest 4-byte float."""
    stored: float = struct.unpack("f", struct.pack("f", value))[0]
    return stored


def _end_state(run: _Run) -> str:
    """As ``run_end_state()`` in sql/006."""
    if run.retry_at is not None:
        return "gone"
    if run.outcome in ("succeeded", "cancelled"):
        return run.outcome
    return "failed"


class _Subscription:
    """An in-process LISTEN: never lost, closed by :meth:`aclose`."""

    def __init__(self, store: MemoryStore, on_payload: Callable[[str], None]) -> None:
        self._store = store
        self.on_payload = on_payload
        self._closed = asyncio.Event()

    def is_lost(self) -> bool:
        return self._closed.is_set()

    async def wait_lost(self) -> None:
        await self._closed.wait()

    async def probe(self, payload: str) -> None:
        self._store.notify(payload)

    async def aclose(self) -> None:
        self._store.unsubscribe(self)
        self._closed.set()


class MemoryStore:
    """Every store role of :mod:`pgqueue.store`, in this process's memory (see the module)."""

    def __init__(self, clock: MemoryClock | None = None) -> None:
        self.clock = clock or MemoryClock()
        self.schema = MEMORY_SCHEMA
        self.channel = f"{MEMORY_SCHEMA}_events"
        self._ids = itertools.count(1)
        self._worker_ids = itertools.count(1)
        self.jobs: dict[int, _Job] = {}
        self.runs: dict[int, list[_Run]] = {}
        self._workers: dict[int, float] = {}  # worker id -> last heartbeat
        self._worker_info: dict[int, tuple[tuple[str, ...], float]] = {}  # id -> (queues, started)
        self._kept_keys: dict[str, tuple[int, float]] = {}  # key -> (job id, until)
        self._deps: dict[int, list[int]] = {}  # job -> its dependencies
        self._dependents: dict[int, list[int]] = {}  # job -> the jobs that depend on it
        self._subscribers: list[_Subscription] = []
        # The claim indexes, as jobs_claim_idx and jobs_due_idx are on PostgreSQL: per queue,
        # the claimable jobs in claim order, and the delayed ones by due time. Entries are
        # added whenever a job becomes claimable and checked when taken (a job claimed,
        # suspended or re-timed since leaves a stale entry behind), so a claim costs
        # O(log n) instead of a sort of every job.
        self._ready: dict[str, list[tuple[int, float, int]]] = {}
        self._later: dict[str, list[tuple[float, int]]] = {}

    # -- notifications -------------------------------------------------------------------

    def notify(self, payload: str) -> None:
        """Deliver ``payload`` to every subscriber on the loop's next turn (as after a commit)."""
        loop = asyncio.get_running_loop()
        for sub in list(self._subscribers):
            loop.call_soon(sub.on_payload, payload)

    def unsubscribe(self, sub: _Subscription) -> None:
        """Forget a closed subscription."""
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    async def subscribe(self, on_payload: Callable[[str], None]) -> _Subscription:
        """An in-process subscription to this store's notifications."""
        sub = _Subscription(self, on_payload)
        self._subscribers.append(sub)
        return sub

    def is_unavailable(self, exc: BaseException) -> bool:  # noqa: ARG002 - the role's signature
        """Never: there is no server to lose."""
        return False

    def _tell_queue(self, queue: str, run_at: float) -> None:
        now = self.clock.time()
        self.notify(f"d:{run_at - now}:{queue}" if run_at > now else f"r:{queue}")

    def advance(self, seconds: float) -> None:
        """Move the clock forward and tell the queues of the jobs that became due."""
        self.clock.advance(seconds)
        now = self.clock.time()
        for queue in sorted({j.queue for j in self.jobs.values() if j.delayed and j.due(now)}):
            self.notify(f"r:{queue}")

    # -- the claim indexes ---------------------------------------------------------------

    def _queue_up(self, job: _Job) -> None:
        """Index a job that has just become claimable (or will, at its run_at)."""
        if job.delayed:
            heapq.heappush(self._later.setdefault(job.queue, []), (job.run_at, job.id))
        else:
            heapq.heappush(self._ready.setdefault(job.queue, []), (job.priority, job.run_at, job.id))

    def _claimable(self, job_id: int, run_at: float) -> _Job | None:
        """The job an index entry names, if it is still claimable as the entry says."""
        job = self.jobs.get(job_id)
        if job is None or job.worker_id is not None or job.run_at != run_at:
            return None
        return job

    def _take(self, queues: Sequence[str], now: float) -> _Job | None:
        """The next job to claim across ``queues``: (priority, run_at, id) order, due only."""
        for q in queues:
            later, ready = self._later.get(q), self._ready.setdefault(q, [])
            while later and later[0][0] <= now:
                run_at, job_id = heapq.heappop(later)
                job = self._claimable(job_id, run_at)
                if job is not None and job.delayed:
                    heapq.heappush(ready, (job.priority, job.run_at, job.id))
        while True:
            heads = [(h[0], q) for q in queues if (h := self._ready.get(q))]
            if not heads:
                return None
            (priority, run_at, job_id), q = min(heads)
            heapq.heappop(self._ready[q])
            job = self._claimable(job_id, run_at)
            if job is not None and job.priority == priority and job.due(now):
                return job

    # -- admin ---------------------------------------------------------------------------

    async def migrate(self) -> list[int]:
        """Nothing to migrate."""
        return []

    async def schema_version(self) -> int | None:
        """Always current."""
        from .postgres.migrate import LATEST_VERSION  # noqa: PLC0415 - the version, not the driver

        return LATEST_VERSION

    async def schema_check(self) -> int:
        """Always current."""
        version = await self.schema_version()
        assert version is not None  # noqa: S101 - schema_version never returns None here
        return version

    async def close(self) -> None:
        """Nothing held."""

    def hold(self) -> None:
        """No connections to hold."""

    # -- enqueue -------------------------------------------------------------------------

    def _new_job(self, jobs: NewJobs, params: str) -> _Job:
        now = self.clock.time()
        run_at = jobs.run_at.timestamp() if jobs.run_at is not None else now + (jobs.delay_s or 0.0)
        job = _Job(
            id=next(self._ids),
            queue=jobs.queue,
            type=jobs.type,
            params=params,
            run_at=run_at,
            inserted_at=now,
            priority=jobs.priority,
            timeout_s=jobs.timeout_s,
            delayed=run_at > now,
        )
        self.jobs[job.id] = job
        self._queue_up(job)  # a waiting job's entry is stale at once: it is indexed on release
        return job

    async def job_insert(self, conn: object, jobs: NewJobs, params: str) -> int:  # noqa: ARG002 - conn: see the module
        """Store one job and tell its queue."""
        job = self._new_job(jobs, params)
        self._tell_queue(job.queue, job.run_at)
        return job.id

    async def job_insert_many(self, conn: object, jobs: NewJobs, params: list[str]) -> list[int]:  # noqa: ARG002
        """Store jobs of one type and queue; one notification for the lot."""
        made = [self._new_job(jobs, p) for p in params]
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
                state = _end_state(runs[-1]) if runs else "gone"
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
        due: list[_Job] = []
        while len(due) < limit and (job := self._take(queues, now)) is not None:
            job.worker_id = worker_id  # claimed now: another entry of the same job is stale at once
            due.append(job)
        rows: list[Row] = []
        for j in due:
            j.attempt, j.delayed, j.claimed_at = j.attempt + 1, False, now
            rows.append(
                (
                    j.id,
                    j.queue,
                    j.type,
                    j.params,
                    j.priority,
                    j.attempt,
                    j.errors,
                    j.last_error,
                    j.run_at,
                    j.inserted_at,
                    j.timeout_s,
                    j.cancel_requested,
                    j.attempt - j.attempt_base,
                    j.checkpoint,
                )
            )
        return rows

    async def job_next_due(self, queues: Sequence[str], held: object = None) -> float | None:  # noqa: ARG002
        """Seconds until the next delayed job in these queues is due."""
        wanted = set(queues)
        times = [
            j.run_at for j in self.jobs.values() if j.queue in wanted and j.worker_id is None and j.delayed
        ]
        return min(times) - self.clock.time() if times else None

    def _log(self, job: _Job, **fields: Any) -> _Run:  # noqa: ANN401 - run columns
        run = _Run(
            job_id=job.id,
            inserted_at=job.inserted_at,
            priority=job.priority,
            queue=job.queue,
            type=job.type,
            params=job.params,
            **fields,
        )
        self.runs.setdefault(job.id, []).append(run)
        return run

    def _end(self, ended: Sequence[tuple[_Job, str]]) -> None:
        """What every end of live jobs shares: the kept keys, the waiters, the dependents.

        The jobs end together, as in the one statement that ends them on PostgreSQL: all
        leave first, then their dependents are settled in one call. So a dependent that
        ends in the same call (cancel_many() of a job and its dependents) ends as that call
        says, and is not cancelled a second time by its dependency's end.
        """
        now = self.clock.time()
        for job, _ in ended:
            self.jobs.pop(job.id, None)
        for job, end in ended:
            if (
                job.unique_key is not None
                and (job.unique_hold or 0) > 0
                and end in (job.unique_ends if job.unique_ends is not None else ("succeeded",))
            ):
                self._kept_keys[job.unique_key] = (job.id, now + (job.unique_hold or 0.0))
            if job.awaited:
                self.notify(f"e:{job.id}")
        settle = [(job.id, end) for job, end in ended if job.has_dependents]
        if settle:
            self._settle([job_id for job_id, _ in settle], [end for _, end in settle])

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
        gone: list[tuple[_Job, str]] = []
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
                )
                logged += 1
            gone.append((job, _END.get(outcome, "failed")))
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
            put_back[job_id] = _at(job.run_at)
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
                )
                logged += 1
        due_in = min((at.timestamp() for at in put_back.values()), default=None)
        return FinalizeResult(
            frozenset(ended), put_back, logged, None if due_in is None else due_in - self.clock.time()
        )

    async def job_release_many(self, worker_id: int, ids: Sequence[int]) -> int:
        """Hand back claimed jobs that never started, without counting the claim."""
        released = 0
        for job_id in ids:
            job = self.jobs.get(job_id)
            if job is not None and job.worker_id == worker_id:
                job.attempt, job.delayed = job.attempt - 1, False
                self._hand_back(job)
                released += 1
        return released

    def _hand_back(self, job: _Job) -> None:
        """A claimed job no worker runs any more: claimable again, or suspended if asked."""
        job.worker_id = SUSPENDED if job.suspend_requested else None
        job.suspend_requested = False
        if job.worker_id is None:
            self._queue_up(job)

    async def job_progress_many(self, worker_id: int, reports: Sequence[ProgressReport]) -> None:
        """Keep the latest progress of jobs this worker runs at those attempts.

        The fraction is kept as the ``real`` column keeps it (a 4-byte float): 0.4 reads
        back as 0.4000000059604645, as on PostgreSQL.
        """
        for r in reports:
            job = self.jobs.get(r.job_id)
            if job is not None and job.worker_id == worker_id and job.attempt == r.attempt:
                job.progress, job.progress_message = _real(r.fraction), r.message

    async def job_cancel_requested_many(self, ids: Sequence[int]) -> dict[int, bool]:
        """Which of these jobs were flagged by cancel() (True) or, if not, by suspend() (False)."""
        jobs = (self.jobs.get(i) for i in ids)
        return {j.id: j.cancel_requested for j in jobs if j and (j.cancel_requested or j.suspend_requested)}

    # -- workers and maintenance -------------------------------------------------------------

    async def worker_register(self, queues: Sequence[str]) -> tuple[int, float]:
        """A new worker id and this store's clock."""
        wid = next(self._worker_ids)
        now = self.clock.time()
        self._workers[wid] = now
        self._worker_info[wid] = (tuple(queues), now)
        return wid, now

    async def worker_heartbeat(self, worker_id: int) -> float | None:
        """The store's clock; None for a worker that is gone."""
        if worker_id not in self._workers:
            return None
        now = self.clock.time()
        self._workers[worker_id] = now
        return now

    async def worker_deregister(self, worker_id: int) -> int:
        """Hand back what the worker still holds and forget it."""
        released = 0
        for job in self.jobs.values():
            if job.worker_id == worker_id:
                job.delayed = True
                self._hand_back(job)
                released += 1
        self._workers.pop(worker_id, None)
        self._worker_info.pop(worker_id, None)
        return released

    async def worker_list(self) -> list[WorkerInfo]:
        """The registered workers, oldest first (all of this process)."""
        host, pid = socket.gethostname(), os.getpid()
        return [
            WorkerInfo(wid, host, pid, queues, _at(started), _at(self._workers[wid]))
            for wid, (queues, started) in sorted(self._worker_info.items())
        ]

    async def worker_reap(self, dead_after: float, self_id: int) -> tuple[int, int]:  # noqa: ARG002
        """Nothing to reap: every worker of this store lives in this process (see the module)."""
        return 0, 0

    async def unique_keys_expire(self) -> int:
        """Drop the kept keys whose time is up."""
        now = self.clock.time()
        expired = [k for k, (_, until) in self._kept_keys.items() if until <= now]
        for key in expired:
            del self._kept_keys[key]
        return len(expired)

    async def jobs_vacuum_if_needed(self, min_dead: int) -> int | None:  # noqa: ARG002
        """No dead tuples in memory."""
        return None

    # -- cancel, management ---------------------------------------------------------------

    def _cancel_unheld(self, ids: Iterable[int], note: str) -> int:
        now = self.clock.time()
        gone: list[tuple[_Job, str]] = []
        for job_id in ids:
            job = self.jobs.get(job_id)
            if job is None or (job.worker_id or 0) > 0:
                continue
            self._log(
                job,
                worker_id=None,
                run_at=job.run_at,
                started_at=now,
                finished_at=now,
                retry_at=None,
                attempt=job.attempt + 1,
                outcome="cancelled",
                error=note,
            )
            gone.append((job, "cancelled"))
        self._end(gone)
        return len(gone)

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

    def _live_row(self, job: _Job, now: float) -> dict[str, Any]:
        return {
            "id": job.id,
            "queue": job.queue,
            "type": job.type,
            "params": job.params,
            "priority": job.priority,
            "attempt": job.attempt,
            "errors": job.errors,
            "last_error": job.last_error,
            "inserted_at": _at(job.inserted_at),
            "run_at": _at(job.run_at),
            "claimed_at": None if job.claimed_at is None else _at(job.claimed_at),
            "progress": job.progress,
            "progress_message": job.progress_message,
            "suspend_requested": job.suspend_requested,
            "checkpoint": job.checkpoint,
            "state": job.state(now),
        }

    def _edges(self, ids: Iterable[int]) -> Edges:
        pairs: set[tuple[int, int]] = set()
        for i in ids:
            pairs.update((i, d) for d in self._deps.get(i, ()))
            pairs.update((d, i) for d in self._dependents.get(i, ()))
        return Edges(sorted(pairs))

    def _record(self, job_id: int, now: float, edges: Edges) -> JobRecord | None:
        job = self.jobs.get(job_id)
        runs = [r.row() for r in self.runs.get(job_id, ())]
        return job_record(job_id, None if job is None else self._live_row(job, now), runs, edges)

    async def job_get(self, job_id: int) -> JobRecord | None:
        """A live or finished job with its runs."""
        return self._record(job_id, self.clock.time(), self._edges([job_id]))

    async def job_list(
        self, *, below: int, queue: str | None, type_: str | None, state: JobState | None, limit: int
    ) -> list[JobRecord]:
        """Up to ``limit`` jobs with ids below ``below``, newest first, live and finished."""
        now = self.clock.time()
        found: list[int] = []
        for job_id in sorted({*self.jobs, *self.runs}, reverse=True):
            if job_id >= below:
                continue
            job = self.jobs.get(job_id)
            if job is not None:
                fields, current = (job.queue, job.type), job.state(now)
            else:
                last = self.runs[job_id][-1]
                fields, current = (last.queue, last.type), _end_state(last)
                if current == "gone":
                    continue
            if queue not in (None, fields[0]) or type_ not in (None, fields[1]):
                continue
            if state is not None and current != state.value:
                continue
            found.append(job_id)
            if len(found) == limit:
                break
        edges = self._edges(found)
        records = [self._record(i, now, edges) for i in found]
        return [r for r in records if r is not None]

    async def job_stats(self) -> list[tuple[str, str, JobState, int]]:
        """Live jobs counted by (queue, type, state)."""
        now = self.clock.time()
        counts: dict[tuple[str, str], dict[JobState, int]] = {}
        for job in self.jobs.values():
            row = counts.setdefault((job.queue, job.type), dict.fromkeys(_LIVE, 0))
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
                or _end_state(last) not in wanted
            ):
                continue
            self.jobs[job_id] = _Job(
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
                last_error=next((r.error for r in reversed(runs) if r.outcome in _FAILED), None),
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

    # -- dependencies ------------------------------------------------------------------------

    def _settle(self, ended: list[int], ends: list[str]) -> None:
        """As ``settle_dependents()`` in sql/006: release or cancel the waiting dependents.

        First the successes: each waiting dependent counts its met dependencies down and is
        released at 0. Then every dependent still waiting on a dependency that ended
        otherwise is cancelled, and those waiting on it in turn (see :meth:`_doom`).
        """
        met: dict[int, int] = {}
        causes: dict[int, str] = {}
        for dep, end in zip(ended, ends, strict=True):
            if end == "succeeded":
                for job_id in self._dependents.get(dep, ()):
                    met[job_id] = met.get(job_id, 0) + 1
            else:
                how = {"cancelled": "was cancelled", "deleted": "was deleted"}.get(end, "failed")
                causes[dep] = f"dependency {dep} {how}"
        freed: dict[str, float] = {}  # queue: the earliest due time of its released jobs
        for job_id in sorted(met):
            job = self.jobs.get(job_id)
            if job is None or job.worker_id != WAITING:
                continue
            job.waiting_on = (job.waiting_on or 0) - met[job_id]
            if job.waiting_on <= 0:
                job.worker_id, job.delayed = None, job.run_at > self.clock.time()
                self._queue_up(job)
                freed[job.queue] = min(freed.get(job.queue, job.run_at), job.run_at)
        for queue, due in sorted(freed.items()):
            self._tell_queue(queue, due)  # one notification per queue, as the function sends
        if causes:
            self._doom(causes)

    def _waiting_dependents(self, job_id: int) -> list[int]:
        return [
            d for d in self._dependents.get(job_id, ()) if (j := self.jobs.get(d)) and j.worker_id == WAITING
        ]

    def _doom(self, causes: dict[int, str]) -> None:
        """Cancel the jobs waiting on the ended ones in ``causes`` (id: cause), and theirs in turn.

        Each job's note is chosen as the function's ``DISTINCT ON`` chooses it among every
        path that reaches it: a cause of its own dependency first (``dependency 42 failed``),
        else the lowest-numbered cancelled dependency, with the cause at the root of that
        path (``dependency 43 was cancelled (dependency 42 failed)``), whichever path is
        shorter; equal ones by the cause's text.
        """
        paths: dict[int, set[tuple[int | None, str]]] = {}  # job: every (parent, root cause)
        todo: list[tuple[int, str]] = []
        for dep, cause in causes.items():
            for job_id in self._waiting_dependents(dep):
                paths.setdefault(job_id, set()).add((None, cause))
                todo.append((job_id, cause))
        while todo:
            parent, cause = todo.pop()
            for job_id in self._waiting_dependents(parent):
                found = paths.setdefault(job_id, set())
                if (parent, cause) not in found:
                    found.add((parent, cause))
                    todo.append((job_id, cause))
        notes: dict[int, str] = {}
        for job_id, options in paths.items():
            via, root = min(options, key=lambda o: (o[0] is not None, o[0] or 0, o[1]))
            notes[job_id] = root if via is None else f"dependency {via} was cancelled ({root})"
        for job_id in notes:
            self.jobs[job_id].has_dependents = False  # their waiting dependents are all in notes
        for job_id in sorted(notes):
            self._cancel_unheld([job_id], notes[job_id])


_END = {"succeeded": "succeeded", "cancelled": "cancelled"}  # any other final outcome: failed
_FAILED = ("failed", "timeout", "crashed")  # the runs whose error is a job's last_error
_LIVE = (JobState.PENDING, JobState.SCHEDULED, JobState.RUNNING, JobState.SUSPENDED, JobState.WAITING)
