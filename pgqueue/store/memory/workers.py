"""Workers and maintenance of the memory store (``workers.sql``'s role)."""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Sequence

from pgqueue._errors import WorkerHasActiveJobs, WorkerNotFound
from pgqueue._records import WorkerInfo

from .base import MemoryBase
from .rows import (
    to_datetime,
)

__all__ = ["WorkersMixin"]


class WorkersMixin(MemoryBase):
    """Registration, heartbeats and maintenance: one process, so nothing to reap."""

    # -- workers and maintenance -------------------------------------------------------------

    async def worker_register(
        self, queues: Sequence[str], concurrency: int | None = None
    ) -> tuple[int, float]:
        """A new worker id and this store's clock."""
        wid = next(self._worker_ids)
        now = self.clock.time()
        self._workers[wid] = now
        self._worker_info[wid] = (tuple(queues), now, concurrency, "worker")
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
        held = [job for job in self.jobs.values() if job.worker_id == worker_id]
        for job in held:
            job.delayed = True
        self._workers.pop(worker_id, None)
        self._worker_info.pop(worker_id, None)
        return self._hand_back_all(held)

    async def worker_list(self) -> list[WorkerInfo]:
        """The registered workers, oldest first (all of this process), with the jobs each holds."""
        host, pid = socket.gethostname(), os.getpid()
        held = Counter(j.worker_id for j in self.jobs.values() if (j.worker_id or 0) > 0)
        return [
            WorkerInfo(
                wid,
                host,
                pid,
                queues,
                to_datetime(started),
                to_datetime(self._workers[wid]),
                kind,
                concurrency,
                held[wid],
            )
            for wid, (queues, started, concurrency, kind) in sorted(self._worker_info.items())
        ]

    async def worker_remove(self, worker_id: int, *, force: bool) -> int:
        """As ``worker_remove`` on PostgreSQL: refuse, or release as reaping does; jobs released.

        Each held job gets the reaper's ``crashed`` run (``timeout`` past its deadline), keeps
        the attempt its claim counted, and is claimable again (suspended, if asked); its
        queue is told. A live worker whose row this removes finds out at its next heartbeat.
        """
        if worker_id not in self._workers:
            raise WorkerNotFound(f"no registered worker has id {worker_id}")
        held = [j for j in self.jobs.values() if j.worker_id == worker_id]
        if held and not force:
            raise WorkerHasActiveJobs(worker_id, len(held))
        now = self.clock.time()
        note = (
            f"worker {worker_id} ({socket.gethostname()} pid {os.getpid()}) stopped heartbeating; "
            "the run was cut short"
        )
        for job in held:
            self._cut_short(job, worker_id, note, now)
        del self._workers[worker_id]
        del self._worker_info[worker_id]
        for queue in sorted({j.queue for j in held if j.worker_id is None}):
            self.notify(f"r:{queue}")
        return len(held)

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

    def can_elect(self) -> bool:
        """Always: the lock is a field of the store."""
        return True

    async def leader_lock(self) -> MemoryLeaderLock | None:
        """The store's one leader lock, when nobody holds it."""
        if self._leader is not None:
            return None
        self._leader = MemoryLeaderLock(self)
        return self._leader


class MemoryLeaderLock:
    """Held until released: a memory store's workers all live in this process."""

    def __init__(self, store: WorkersMixin) -> None:
        self._store = store

    async def check(self, within: float) -> bool:  # noqa: ARG002 - the role's signature
        """Held until released."""
        return self._store._leader is self  # noqa: SLF001 - the lock belongs to the store

    async def release(self) -> None:
        """Free the store's lock for the next worker that tries."""
        if self._store._leader is self:  # noqa: SLF001
            self._store._leader = None  # noqa: SLF001
