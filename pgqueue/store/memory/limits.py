"""Global limits of queues in the memory store: ``limits.sql`` and ``claim_limited`` (sql/011).

The same decisions as the function's: the held jobs counted are those a limited claim
took (or a set or an adoption marked) and that a worker still holds at that claim's
attempt, minus the claiming worker's finished runs; the room is the least of the
concurrency and rate limits; per-key claims read at most max(200, 4 × room) due jobs
(2000 at most) and pass over the jobs of keys at their limit, which stay claimable.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence

from pgqueue._codec import decode, encode
from pgqueue._limits import TENANT, LimitedClaim, LimitSeen, QueueLimit

from .base import MemoryBase
from .rows import LiveJob, to_datetime

__all__ = ["LimitsMixin"]

PER_KEY_SCAN = (200, 4, 2000)  # a per-key claim reads max(200, 4 × room) due jobs, 2000 at most


@dataclasses.dataclass(slots=True)
class _Limited:
    """One ``queue_limits`` row and what the function reads with it."""

    limit: QueueLimit
    held: dict[int, tuple[int, str | None]] = dataclasses.field(default_factory=dict)
    """Counted jobs (``jobs.slot``): id -> (attempt of the claim that counted it, its key)."""
    starts: collections.deque[tuple[float, int]] = dataclasses.field(default_factory=collections.deque)
    """The rate window (``queue_starts``): (time, jobs) per claim, oldest first."""
    leases: dict[int, int] = dataclasses.field(default_factory=dict)
    """Slot leases (``queue_leases``): worker id -> slots; a gone worker's entry is ignored."""


def _leased(limit: QueueLimit) -> bool:
    """Concurrency only: kept by slot leases (``lease_slots``) instead of claim counts."""
    return limit.concurrency is not None and limit.per_key is None and limit.rate is None


def key_of(job: LiveJob, field: str | None) -> str | None:
    """As ``job_limit_key`` (sql/014): the tenant for :data:`TENANT`, else ``params ->> field``.

    A params field's value is its text (JSON text for a number or an object).
    """
    if field == TENANT:
        return job.tenant
    if field is None or job.params is None:
        return None
    params = decode(job.params)
    if not isinstance(params, dict) or params.get(field) is None:
        return None
    value = params[field]
    return value if isinstance(value, str) else encode(value)


def _window(state: _Limited, per: float, now: float) -> int:
    """Starts in the rate window ending now, after dropping the claims that left it."""
    while state.starts and state.starts[0][0] <= now - per:
        state.starts.popleft()
    return sum(n for _, n in state.starts)


class LimitsMixin(MemoryBase):
    """``limits.sql``'s statements on this process's dicts."""

    _queue_limits: dict[str, _Limited]

    def _limits(self) -> dict[str, _Limited]:
        """The table, created on first use (the base class owns ``__init__``)."""
        try:
            return self._queue_limits
        except AttributeError:
            self._queue_limits = {}
            return self._queue_limits

    def _counts(
        self, state: _Limited, worker_id: int, done: set[tuple[int, int]]
    ) -> collections.Counter[str | None]:
        """Held jobs by key; entries of jobs no longer held at their counted attempt are dropped."""
        counts: collections.Counter[str | None] = collections.Counter()
        for job_id, (attempt, key) in list(state.held.items()):
            job = self.jobs.get(job_id)
            if job is None or job.attempt != attempt or (job.worker_id or 0) <= 0:
                del state.held[job_id]
            elif job.worker_id != worker_id or (job_id, attempt) not in done:
                counts[key] += 1
        return counts

    async def job_claim_limited(
        self,
        queue: str,
        limit: int,
        worker_id: int,
        done: Sequence[tuple[int, int]],
        held: object = None,  # noqa: ARG002 - no connections to hold
    ) -> LimitedClaim:
        """Claim up to ``limit`` due jobs of ``queue`` within its limits."""
        if worker_id not in self._workers or limit < 1:
            return LimitedClaim([], capped=False, free_in=None)
        # No row: removed since the worker looked, and claimed as the plain claim would.
        state = self._limits().get(queue) or _Limited(QueueLimit(queue))
        lim, now = state.limit, self.clock.time()
        counts = self._counts(state, worker_id, set(done))
        room = limit
        if lim.concurrency is not None:
            room = min(room, lim.concurrency - sum(counts.values()))
        used = 0
        if lim.rate is not None:
            used = _window(state, lim.rate.per.total_seconds(), now)
            room = min(room, lim.rate.count - used)
        room = max(room, 0)
        taken, passed = self._pick(queue, lim, room, counts, (worker_id, now))
        counted = lim.concurrency is not None or lim.per_key is not None
        for j in taken:
            j.attempt, j.delayed, j.claimed_at = j.attempt + 1, False, now
            if counted:
                state.held[j.id] = (j.attempt, key_of(j, lim.key))
        got = len(taken)
        free_in = None
        if lim.rate is not None:
            if got:
                state.starts.append((now, got))
            if used + got >= lim.rate.count:
                free_in = state.starts[0][0] + lim.rate.per.total_seconds() - now
        capped = got < limit and (passed or (room < limit and got == room))
        return LimitedClaim(
            [j.claim_row() for j in taken], capped=capped, free_in=free_in if capped else None
        )

    def _pick(
        self,
        queue: str,
        lim: QueueLimit,
        room: int,
        counts: collections.Counter[str | None],
        claim: tuple[int, float],
    ) -> tuple[list[LiveJob], bool]:
        """Up to ``room`` due jobs in claim order that fit the per-key limit, marked as the worker's.

        Also whether the per-key limit passed over one (it stays claimable).
        """
        worker_id, now = claim
        low, factor, high = PER_KEY_SCAN
        scan = room if lim.per_key is None else min(max(low, factor * room), high)
        taken: list[LiveJob] = []
        passed: list[LiveJob] = []
        while (
            len(taken) < room
            and len(taken) + len(passed) < scan
            and (job := self._take([queue], now)) is not None
        ):
            key = key_of(job, lim.key)
            if lim.per_key is not None and key is not None and counts[key] >= lim.per_key:
                passed.append(job)
                continue
            job.worker_id = worker_id  # claimed now: another index entry of the same job is stale at once
            taken.append(job)
            counts[key] += 1
        for job in passed:
            self._queue_up(job)
        return taken, bool(passed)

    async def queue_limited(self, queues: Sequence[str], held: object = None) -> dict[str, LimitSeen]:  # noqa: ARG002
        """Which of these queues have a limit, with their concurrency limits and lease mode."""
        table = self._limits()
        return {
            q: LimitSeen(table[q].limit.concurrency, _leased(table[q].limit))
            for q in sorted(set(queues))
            if q in table
        }

    async def lease_slots(self, queue: str, worker_id: int, want: int, held: object = None) -> int | None:  # noqa: ARG002
        """Set this worker's slots of ``queue`` to as many of ``want`` as fit; None: not leased."""
        if worker_id not in self._workers:
            return 0
        state = self._limits().get(queue)
        if state is None or not _leased(state.limit):
            if state is not None:
                state.leases.pop(worker_id, None)
            return None
        concurrency = state.limit.concurrency or 0
        others = sum(n for w, n in state.leases.items() if w != worker_id and w in self._workers)
        granted = max(0, min(want, concurrency - others))
        state.leases[worker_id] = granted
        return granted

    async def queue_limit_adopt(self, queues: Sequence[str], worker_id: int, held: object = None) -> int:  # noqa: ARG002
        """Count the jobs this worker holds in newly limited ``queues``."""
        adopted = 0
        for q in queues:
            state = self._limits().get(q)
            if state is None or (state.limit.concurrency is None and state.limit.per_key is None):
                continue
            for job in self.jobs.values():
                if job.queue == q and job.worker_id == worker_id and job.id not in state.held:
                    state.held[job.id] = (job.attempt, key_of(job, state.limit.key))
                    adopted += 1
        return adopted

    async def queue_limit_set(self, limit: QueueLimit) -> QueueLimit:
        """Store ``limit``; the queue's held jobs count against it; a kept rate keeps its window."""
        table = self._limits()
        old = table.get(limit.queue)
        stored = dataclasses.replace(limit, updated_at=to_datetime(self.clock.time()))
        state = _Limited(stored)
        if old is not None and limit.rate is not None:
            state.starts = old.starts
        if old is not None and _leased(limit):
            state.leases = old.leases
        if limit.concurrency is not None or limit.per_key is not None:
            for job in self.jobs.values():
                if job.queue == limit.queue and (job.worker_id or 0) > 0:
                    state.held[job.id] = (job.attempt, key_of(job, limit.key))
        table[limit.queue] = state
        return stored

    async def queue_limit_remove(self, queue: str) -> bool:
        """Drop the queue's limit and rate window."""
        return self._limits().pop(queue, None) is not None

    async def queue_limit_list(self) -> list[QueueLimit]:
        """Every limit, by queue."""
        table = self._limits()
        return [table[q].limit for q in sorted(table)]
