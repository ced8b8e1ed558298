"""Worker rows (the lease on every claimed job), reaping, and the hot table's vacuum."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

import anyio

from pgqueue._errors import WorkerHasActiveJobs, WorkerNotFound
from pgqueue._records import WorkerInfo

from .errors import again_on_conflict
from .pool import CONNECT_TIMEOUT_S, StoreBase
from .queries import quote_ident

__all__ = ["WorkersMixin"]


class WorkersMixin(StoreBase):
    """``workers.sql`` and ``maintenance.sql``: one method per task."""

    async def worker_register(
        self, queues: Sequence[str], concurrency: int | None = None
    ) -> tuple[int, float]:
        """Insert this process's worker row; returns its id and the server's clock (epoch s)."""
        row = await self.pool.fetchrow(
            self.q.worker_register, os.getpid(), socket.gethostname(), list(queues), concurrency
        )
        assert row is not None  # noqa: S101 - INSERT ... RETURNING returns its row
        return int(row[0]), float(row[1])

    async def worker_list(self) -> list[WorkerInfo]:
        """The registered workers, oldest first, with the jobs each holds (one grouped scan)."""
        rows = await self.pool.fetch(self.q.worker_list)
        return [WorkerInfo(r[0], r[1], r[2], tuple(r[3]), r[4], r[5], r[6], r[7], int(r[8])) for r in rows]

    async def worker_remove(self, worker_id: int, *, force: bool) -> int:
        """Drop a worker's row; with ``force``, release its jobs as reaping does. Jobs released.

        One transaction: lock the row (a claim in flight commits first), count what it holds
        (a later statement, so a newer snapshot), refuse or release with the reaper's own
        statement (a ``crashed`` run per job, the attempt counted), then wake the queues of
        the freed jobs. Raises WorkerNotFound or WorkerHasActiveJobs (nothing changed). The
        release locks the worker's jobs, which its own flush may be writing in another order:
        a deadlock's victim runs again.
        """
        return await again_on_conflict("worker_remove", lambda: self._remove(worker_id, force=force))

    async def _remove(self, worker_id: int, *, force: bool) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(self.q.worker_lock, worker_id) is None:
                raise WorkerNotFound(f"no registered worker has id {worker_id}")
            held = {r[0]: int(r[1]) for r in await conn.fetch(self.q.worker_jobs_held, worker_id)}
            if held and not force:
                raise WorkerHasActiveJobs(worker_id, sum(held.values()))
            row = await conn.fetchrow(self.q.worker_reap_release, [worker_id], self.channel)
            assert row is not None  # noqa: S101 - a SELECT of scalars always returns a row
            return int(row[0])

    async def worker_heartbeat(self, worker_id: int) -> float | None:
        """Refresh the heartbeat; returns the server's clock, or None once this worker was reaped.

        Bounded waits for a connection and for the answer: a heartbeat queued behind busy
        connections would otherwise come too late and get this worker reaped.
        """
        async with self.pool.acquire(timeout=CONNECT_TIMEOUT_S) as conn:
            server: float | None = await conn.fetchval(
                self.q.worker_heartbeat, worker_id, timeout=CONNECT_TIMEOUT_S
            )
        return server

    async def worker_deregister(self, worker_id: int) -> int:
        """Release everything the worker still holds and delete its row; returns jobs released."""
        released: int | None = await self.pool.fetchval(self.q.worker_deregister, worker_id, self.channel)
        return released or 0

    async def worker_reap(self, dead_after: float, self_id: int) -> tuple[int, int]:
        """Release the jobs of workers silent for ``dead_after`` seconds and drop them.

        Two statements in one transaction on purpose: the first locks the dead rows (and so
        waits for their claims in flight), the second reads the jobs with a newer snapshot.
        Returns (jobs released, workers reaped).
        """
        async with self.pool.acquire() as conn, conn.transaction():
            dead = [r[0] for r in await conn.fetch(self.q.worker_reap_lock, dead_after, self_id)]
            if not dead:
                return 0, 0
            row = await conn.fetchrow(self.q.worker_reap_release, dead, self.channel)
            assert row is not None  # noqa: S101 - a SELECT of scalars always returns a row
            return int(row[0]), int(row[1])

    async def jobs_vacuum_if_needed(self, min_dead: int) -> int | None:
        """VACUUM the hot table when it holds ``min_dead`` dead tuples (and 5% of its live ones).

        Returns the dead tuples it removed (as counted before), or None when it did not vacuum:
        below the threshold, or another worker holds the vacuum lock. VACUUM cannot run in a
        transaction, so this uses a plain pooled connection and a session advisory lock.
        """
        table = f"{quote_ident(self.schema)}.jobs"
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(self.q.jobs_dead_tuples, table)
            if row is None or row[0] < min_dead or row[0] < row[1] // 20:
                return None
            key = f"pgqueue.vacuum:{self.schema}"
            if not await conn.fetchval(self.q.jobs_vacuum_lock, key):
                return None
            try:
                await conn.execute(self.q.jobs_vacuum)
            finally:
                # Shielded: a session lock left on a pooled connection (reset is a no-op)
                # would stop every worker from vacuuming while that connection lives.
                with anyio.CancelScope(shield=True), anyio.move_on_after(CONNECT_TIMEOUT_S) as scope:
                    await conn.fetchval(self.q.jobs_vacuum_unlock, key)
                if scope.cancelled_caught:
                    conn.terminate()
            dead: int = row[0]
            return dead
