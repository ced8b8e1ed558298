"""Writing outcomes: the flush that ends or puts back jobs and logs their runs."""

from __future__ import annotations

import datetime as dt

import asyncpg

from pgqueue._records import ActivityCounts
from pgqueue.store import ActivityRows, FinalizeResult, FlushBatch, Held

from .errors import again_on_conflict
from .pool import StoreBase

__all__ = ["RunsMixin"]


class RunsMixin(StoreBase):
    """``runs.sql``: one method per statement."""

    async def job_finalize_many(
        self,
        worker_id: int,
        batch: FlushBatch,
        held: Held | None = None,
        *,
        clock_offset: float = 0.0,
    ) -> FinalizeResult:
        """Write one flush in one statement: end and put back jobs, fenced, and log their runs.

        ``clock_offset``: seconds that put the batch's worker-clock times on the database's clock.
        """
        args = (worker_id, *batch.arguments(), clock_offset, self.channel, batch.end_lines, batch.back_lines)

        async def write() -> asyncpg.Record | None:
            async with self._connection(held) as conn:
                return await conn.fetchrow(self.q.job_finalize_many, *args)

        # A deadlock with another transaction that locks some of these jobs (set_queue_limit,
        # remove_worker, an application's own) undoes the whole flush: it is written again.
        row = await again_on_conflict("job_finalize_many", write)
        assert row is not None  # noqa: S101 - a SELECT of scalars always returns a row
        put_back: dict[int, dt.datetime] = dict(zip(row[1] or (), row[2] or (), strict=True))
        return FinalizeResult(frozenset(row[0] or ()), put_back, row[3], row[4])

    async def job_runs_activity(self, bucket_s: float, buckets: int) -> ActivityRows:
        """Runs that ended in the last ``buckets`` buckets, by (bucket index, queue).

        Planned for its values (a custom plan, in its own transaction): the pool's generic
        plans cannot see how narrow the finished_at range is, and might scan the whole log.
        """
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute(self.q.plan_custom)
            rows = await conn.fetch(self.q.job_runs_activity, bucket_s, buckets)
        counts = [
            (
                int(r["bucket"]),
                r["queue"],
                ActivityCounts(r["succeeded"], r["failed"], r["retried"], r["cancelled"]),
            )
            for r in rows
            if r["queue"] is not None
        ]
        return ActivityRows(since=rows[0]["since"], until=rows[0]["until"], counts=counts)
