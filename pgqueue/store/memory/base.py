"""What every part of the memory store shares.

Its state, notifications, the claim indexes, and the steps that end jobs (kept keys,
waiters, dependents).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pgqueue.store.batch import NewJobs

from .rows import (
    MEMORY_SCHEMA,
    SUSPENDED,
    WAITING,
    LiveJob,
    LoggedRun,
    MemoryClock,
)

__all__ = ["MemoryBase", "MemorySubscription"]


class MemorySubscription:
    """An in-process LISTEN: never lost, closed by :meth:`aclose`."""

    def __init__(self, store: MemoryBase, on_payload: Callable[[str], None]) -> None:
        self._store = store
        self.on_payload = on_payload
        self._closed = asyncio.Event()

    def is_lost(self) -> bool:
        """Only once closed: nothing else can break it."""
        return self._closed.is_set()

    async def wait_lost(self) -> None:
        """Return once closed."""
        await self._closed.wait()

    async def probe(self, payload: str) -> None:
        """Send ``payload`` to every subscriber, this one included."""
        self._store.notify(payload)

    async def aclose(self) -> None:
        """Stop receiving."""
        self._store.unsubscribe(self)
        self._closed.set()


class MemoryBase:
    """The memory store's state and shared steps; the role mixins build on it."""

    def __init__(self, clock: MemoryClock | None = None) -> None:
        self.clock = clock or MemoryClock()
        self.schema = MEMORY_SCHEMA
        self.channel = f"{MEMORY_SCHEMA}_events"
        self._ids = itertools.count(1)
        self._worker_ids = itertools.count(1)
        self.jobs: dict[int, LiveJob] = {}
        self.runs: dict[int, list[LoggedRun]] = {}
        self._workers: dict[int, float] = {}  # worker id -> last heartbeat
        # id -> (queues, started, concurrency, kind: "worker" or "pull")
        self._worker_info: dict[int, tuple[tuple[str, ...], float, int | None, str]] = {}
        self._kept_keys: dict[str, tuple[int, float]] = {}  # key -> (job id, until)
        self._deps: dict[int, list[int]] = {}  # job -> its dependencies
        self._dependents: dict[int, list[int]] = {}  # job -> the jobs that depend on it
        self._subscribers: list[MemorySubscription] = []
        self._leader: object | None = None  # the maintenance-leader lock's holder (workers.py)
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

    def unsubscribe(self, sub: MemorySubscription) -> None:
        """Forget a closed subscription."""
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    async def subscribe(self, on_payload: Callable[[str], None]) -> MemorySubscription:
        """An in-process subscription to this store's notifications."""
        sub = MemorySubscription(self, on_payload)
        self._subscribers.append(sub)
        return sub

    def is_unavailable(self, exc: BaseException) -> bool:  # noqa: ARG002 - the role's signature
        """Never: there is no server to lose."""
        return False

    def is_conflict(self, exc: BaseException) -> bool:  # noqa: ARG002 - the role's signature
        """Never: one event loop runs every write whole, so no two wait for each other."""
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

    def _queue_up(self, job: LiveJob) -> None:
        """Index a job that has just become claimable (or will, at its run_at)."""
        if job.delayed:
            heapq.heappush(self._later.setdefault(job.queue, []), (job.run_at, job.id))
        else:
            heapq.heappush(self._ready.setdefault(job.queue, []), (job.priority, job.run_at, job.id))

    def _claimable(self, job_id: int, run_at: float) -> LiveJob | None:
        """The job an index entry names, if it is still claimable as the entry says."""
        job = self.jobs.get(job_id)
        if job is None or job.worker_id is not None or job.run_at != run_at:
            return None
        return job

    def _take(self, queues: Sequence[str], now: float) -> LiveJob | None:
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

    async def migration_pending_sql(self) -> str:
        """No SQL: the memory backend has no schema."""
        return ""

    async def schema_version(self) -> int | None:
        """Always current."""
        from pgqueue.store.postgres.migrate import LATEST_VERSION  # noqa: PLC0415 - the version, not the driver

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

    def _new_job(self, jobs: NewJobs, params: str, tenant: str | None = None) -> LiveJob:
        """Store a new job; ``tenant`` (one of ``job_insert_many``'s) stands in for ``jobs.tenant``."""
        now = self.clock.time()
        run_at = jobs.run_at.timestamp() if jobs.run_at is not None else now + (jobs.delay_s or 0.0)
        job = LiveJob(
            id=next(self._ids),
            queue=jobs.queue,
            type=jobs.type,
            params=params,
            run_at=run_at,
            inserted_at=now,
            priority=jobs.priority,
            timeout_s=jobs.timeout_s,
            delayed=run_at > now,
            trace_context=jobs.trace,
            tenant=jobs.tenant if tenant is None else tenant,
        )
        self.jobs[job.id] = job
        self._queue_up(job)  # a waiting job's entry is stale at once: it is indexed on release
        return job

    def _log(self, job: LiveJob, **fields: Any) -> LoggedRun:  # noqa: ANN401 - run columns
        run = LoggedRun(
            job_id=job.id,
            inserted_at=job.inserted_at,
            priority=job.priority,
            queue=job.queue,
            type=job.type,
            params=job.params,
            tenant=job.tenant,
            **fields,
        )
        self.runs.setdefault(job.id, []).append(run)
        return run

    def _end(self, ended: Sequence[tuple[LiveJob, str]]) -> None:
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

    def _cut_short(self, job: LiveJob, owner: int | None, note: str, now: float) -> None:
        """Free a held job whose run was cut short, as the reaper does on PostgreSQL.

        A ``crashed`` run row (``timeout`` past the job's own deadline) with ``note`` as its
        error and the job's last error; the claim's attempt stays counted.
        """
        started = job.claimed_at if job.claimed_at is not None else now
        late = job.timeout_s is not None and started + job.timeout_s < now
        job.last_error = note
        self._log(
            job,
            worker_id=owner,
            run_at=job.run_at,
            started_at=started,
            finished_at=now,
            retry_at=now,
            attempt=job.attempt,
            outcome="timeout" if late else "crashed",
            error=note,
        )
        job.delayed = True
        self._hand_back(job)

    def _hand_back_all(self, jobs: list[LiveJob]) -> int:
        """Hand back ``jobs`` and wake their queues' workers, as the releasing statements do."""
        for job in jobs:
            self._hand_back(job)
        for queue in sorted({j.queue for j in jobs if j.worker_id is None}):
            self.notify(f"r:{queue}")
        return len(jobs)

    def _hand_back(self, job: LiveJob) -> None:
        """A claimed job no worker runs any more: claimable again, or suspended if asked."""
        job.worker_id = SUSPENDED if job.suspend_requested else None
        job.suspend_requested = False
        job.lease_until = None
        if job.worker_id is None:
            self._queue_up(job)

    def _cancel_unheld(self, ids: Iterable[int], note: str) -> int:
        now = self.clock.time()
        gone: list[tuple[LiveJob, str]] = []
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
