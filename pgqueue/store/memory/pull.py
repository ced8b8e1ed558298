"""Pull consumers on the memory store (``pull.sql``'s role): registration, leases, their expiry.

The statements' ``why`` comments in ``pgqueue/store/postgres/queries/pull.sql`` are the
spec; this is the same contract on the memory store's dicts, so that
``Scheduler.in_memory()`` leases jobs as PostgreSQL does:

- A pull consumer is a ``workers`` entry of kind ``"pull"``: it owns the jobs it leases, so
  ``list_workers()`` shows them held and ``remove_worker()`` releases them.
- A lease is a claim (``worker_id``, ``attempt``, ``claimed_at``) plus a deadline,
  ``LiveJob.lease_until``, on the store's :class:`~pgqueue.store.memory.MemoryClock`. Every
  call on it is fenced by (job id, owner, attempt).
- **Expiry follows the memory clock.** A lease whose deadline passes in real time is freed
  by the next sweep (a claiming consumer's, or a worker's reaping round), as on
  PostgreSQL. :meth:`PullMixin.advance` (``pgqueue.testing.advance``) frees the leases it
  moves past their deadline at once, so an application's test expires a lease with one
  call and the next ``dequeue()`` sees the job again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pgqueue._models import Row
from pgqueue.store.pull_rows import LeaseClaim

from .base import MemoryBase
from .rows import LiveJob, to_datetime

__all__ = ["PullMixin"]

PULL = "pull"  # the kind of a pull consumer's workers entry


class PullMixin(MemoryBase):
    """One method per statement of ``pull.sql``, and ``advance()`` that expires leases."""

    def _is_consumer(self, owner: int) -> bool:
        info = self._worker_info.get(owner)
        return info is not None and info[3] == PULL

    async def consumer_register(self, queues: Sequence[str]) -> tuple[int, float]:
        """A new pull consumer's id (a workers entry of kind "pull") and the store's clock."""
        wid = next(self._worker_ids)
        now = self.clock.time()
        self._workers[wid] = now
        self._worker_info[wid] = (tuple(queues), now, None, PULL)
        return wid, now

    def _limited(self, queues: Iterable[str]) -> list[str]:
        """The queues among ``queues`` that have a global limit (LimitsMixin's table)."""
        table: dict[str, object] = getattr(self, "_queue_limits", {})  # made by the first limit set
        return sorted(q for q in set(queues) if q in table)

    async def queues_with_jobs(self) -> list[str]:
        """Every queue that has unclaimed jobs (due or not) and no global limit, sorted."""
        queues = {j.queue for j in self.jobs.values() if j.worker_id is None}
        return sorted(queues - set(self._limited(queues)))

    async def lease_next_due(self, queues: Sequence[str], types: Sequence[str] | None) -> float | None:
        """Seconds until the next delayed job of ``types`` (None: any) in ``queues`` is due."""
        wanted, kinds = set(queues), None if types is None else set(types)
        times = [
            j.run_at
            for j in self.jobs.values()
            if j.queue in wanted and j.worker_id is None and j.delayed and (kinds is None or j.type in kinds)
        ]
        return min(times) - self.clock.time() if times else None

    def _touch(self, owner: int) -> float | None:
        """The store's clock, after marking the consumer active; None if it is not registered."""
        if not self._is_consumer(owner):
            return None
        now = self.clock.time()
        self._workers[owner] = now
        return now

    def _lease(self, job: LiveJob, owner: int, now: float, lease_s: float) -> Row:
        """Claim ``job`` for ``owner`` until now + ``lease_s``; its row in the claim's layout."""
        job.worker_id = owner  # claimed now: other index entries of this job are stale at once
        job.attempt, job.delayed, job.claimed_at = job.attempt + 1, False, now
        job.lease_until = now + lease_s
        return (*job.claim_row(), job.claimed_at, job.lease_until, owner, now, ())

    async def lease_claim_many(
        self, queues: Sequence[str], types: Sequence[str] | None, limit: int, owner: int, lease_s: float
    ) -> LeaseClaim:
        """Lease up to ``limit`` due jobs of ``types`` (None: any) in ``queues`` for ``owner``.

        The order is a worker's claim order (priority, run_at, id), taken from the same
        indexes. Jobs of other types are skipped and indexed again, so a type filter costs
        a pass over the queues' other jobs: fine for a test backend.
        """
        now = self._touch(owner)
        if now is None:
            return LeaseClaim(registered=False, server_time=self.clock.time(), rows=[])
        if limited := self._limited(queues):
            return LeaseClaim(registered=True, server_time=now, rows=[], limited=limited)
        wanted = None if types is None else frozenset(types)
        rows: list[Row] = []
        skipped: dict[int, LiveJob] = {}
        while len(rows) < limit and (job := self._take(queues, now)) is not None:
            if wanted is None or job.type in wanted:
                rows.append(self._lease(job, owner, now, lease_s))
            else:
                skipped[job.id] = job
        for job in skipped.values():
            self._queue_up(job)
        return LeaseClaim(registered=True, server_time=now, rows=rows)

    async def lease_claim_one(self, job_id: int, owner: int, lease_s: float) -> LeaseClaim:
        """Lease one given job if it is pending: unclaimed, due or scheduled for later."""
        now = self._touch(owner)
        if now is None:
            return LeaseClaim(registered=False, server_time=self.clock.time(), rows=[])
        job = self.jobs.get(job_id)
        if job is not None and (limited := self._limited([job.queue])):
            return LeaseClaim(registered=True, server_time=now, rows=[], limited=limited)
        if job is None or job.worker_id is not None:
            return LeaseClaim(registered=True, server_time=now, rows=[])
        return LeaseClaim(registered=True, server_time=now, rows=[self._lease(job, owner, now, lease_s)])

    async def lease_heartbeat(
        self, job_id: int, owner: int, attempt: int, lease_s: float
    ) -> tuple[bool, float] | None:
        """Move the lease's deadline on: (cancel requested, new deadline), or None if lost."""
        job = self.jobs.get(job_id)
        if job is None or job.worker_id != owner or job.attempt != attempt or job.lease_until is None:
            return None
        job.lease_until = self.clock.time() + lease_s
        return job.cancel_requested, job.lease_until

    async def lease_get(self, job_id: int) -> Row | None:
        """The live job's claim row, lease times and holder (see ``LEASED_AT``), or None."""
        job = self.jobs.get(job_id)
        if job is None:
            return None
        return (*job.claim_row(), job.claimed_at, job.lease_until, job.worker_id, self.clock.time())

    async def leases_release_expired(self, batch: int) -> int:
        """Free up to ``batch`` jobs whose lease expired, oldest deadline first; returns how many."""
        return self._release_expired(batch)

    def _release_expired(self, batch: int | None) -> int:
        """As the reaper frees a dead worker's jobs: a crashed (or timeout) run, the attempt counted.

        A job suspend() asked for is left suspended; the freed jobs' queues are told.
        """
        now = self.clock.time()
        expired = sorted(
            (j for j in self.jobs.values() if j.lease_until is not None and j.lease_until < now),
            key=lambda j: (j.lease_until, j.id),
        )[:batch]
        for job in expired:
            owner, until = job.worker_id, job.lease_until
            assert until is not None  # noqa: S101 - selected for its deadline
            note = (
                f"the lease of pull consumer {owner} expired at {to_datetime(until).isoformat(sep=' ')} "
                "without a heartbeat; the run was cut short"
            )
            self._cut_short(job, owner, note, now)  # clears the deadline
        for queue in sorted({j.queue for j in expired if j.worker_id is None}):
            self.notify(f"r:{queue}")
        return len(expired)

    def advance(self, seconds: float) -> None:
        """Move the clock forward, tell the queues of due jobs, and free the leases that expired.

        Freeing at once (instead of at the next sweep, which a consumer runs at most every
        few seconds of real time) makes ``advance()`` past a lease's deadline a test's way
        to expire it.
        """
        super().advance(seconds)
        self._release_expired(None)

    async def consumers_forget(self, idle_s: float) -> int:
        """Remove pull consumers idle for ``idle_s`` seconds that hold nothing; returns how many."""
        cutoff = self.clock.time() - idle_s
        held = {j.worker_id for j in self.jobs.values()}
        gone = [
            wid
            for wid, (_, _, _, kind) in self._worker_info.items()
            if kind == PULL and self._workers[wid] < cutoff and wid not in held
        ]
        for wid in gone:
            self._forget(wid)
        return len(gone)

    async def consumer_leave(self, owner: int) -> bool:
        """Remove this consumer's entry unless it holds leases; whether it was removed."""
        if not self._is_consumer(owner) or any(j.worker_id == owner for j in self.jobs.values()):
            return False
        self._forget(owner)
        return True

    def _forget(self, wid: int) -> None:
        del self._workers[wid]
        del self._worker_info[wid]
