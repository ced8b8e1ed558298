"""Writing outcomes: the flush that ends or puts back jobs and logs their runs."""

from __future__ import annotations

import datetime as dt

from pgqueue.store import FinalizeResult, FlushBatch, Held

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
        async with self._connection(held) as conn:
            row = await conn.fetchrow(
                self.q.job_finalize_many, worker_id, *batch.arguments(), clock_offset, self.channel
            )
        assert row is not None  # noqa: S101 - a SELECT of scalars always returns a row
        put_back: dict[int, dt.datetime] = dict(zip(row[1] or (), row[2] or (), strict=True))
        return FinalizeResult(frozenset(row[0] or ()), put_back, row[3], row[4])
