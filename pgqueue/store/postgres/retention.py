"""The run log's day partitions: the steps of a retention round (``retention.sql``, sql/012).

Each DDL step is its own short transaction under a ``lock_timeout``: creating or dropping a
partition waits for the log's readers, and the log's writers (the flushes) queue behind
it, so a step that cannot get its locks soon gives up (None) instead of stalling them; the
next round tries again.
"""

from __future__ import annotations

import datetime as dt

import anyio
import asyncpg

from pgqueue.store.retention_plan import RetentionPlan

from .pool import StoreBase

__all__ = ["RetentionMixin"]


class RetentionMixin(StoreBase):
    """``retention.sql``: one method per step of a retention round."""

    async def runs_retention_plan(
        self, now: dt.datetime | None, keep_s: float, keep_failed_s: float, days_ahead: int
    ) -> RetentionPlan:
        """The cutoffs and the days lacking partitions, then the partitions past the cutoffs."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                self.q.runs_retention_plan, now, keep_s, keep_failed_s, days_ahead, self.schema
            )
            assert row is not None  # noqa: S101 - a SELECT of one row of scalars
            expired = await conn.fetch(self.q.runs_partitions_expired, self.schema, row[0], row[1])
        return RetentionPlan(
            done_before=row[0],
            failed_before=row[1],
            missing=tuple(row[2]),
            missing_partitions=row[3],
            expired=tuple(r[0] for r in expired),
            default_rows=int(row[4]),
        )

    async def runs_partitions_expired(
        self, done_before: dt.datetime, failed_before: dt.datetime
    ) -> list[str]:
        """The day partitions whose whole day is before their tree's cutoff, oldest first."""
        rows = await self.pool.fetch(self.q.runs_partitions_expired, self.schema, done_before, failed_before)
        return [r[0] for r in rows]

    async def runs_partition_ensure(self, day: dt.date, lock_timeout: float) -> int | None:
        """Create ``day``'s partitions (sql/012); how many, or None when the locks did not come."""
        return await self._ddl(self.q.runs_partition_ensure, day, lock_timeout)

    async def runs_partition_drop(self, partition: str, lock_timeout: float) -> int | None:
        """Drop one expired day partition; the superseded failed runs deleted, or None when busy."""
        return await self._ddl(self.q.runs_partition_drop, partition, lock_timeout)

    async def runs_defaults_expire(self, done_before: dt.datetime, failed_before: dt.datetime) -> int:
        """Delete the rows of expired days waiting in the DEFAULT partitions; how many."""
        deleted: int = await self.pool.fetchval(self.q.runs_defaults_expire, done_before, failed_before)
        return deleted

    async def _ddl(self, query: str, arg: object, lock_timeout: float) -> int | None:
        """Run one partition function in its own transaction, its lock waits bounded.

        Shielded: a worker stopping lets the step commit or roll back rather than cutting
        it off inside its transaction (the pool would get the connection back mid-transaction).
        """
        with anyio.CancelScope(shield=True):
            async with self.pool.acquire() as conn:
                try:
                    async with conn.transaction():
                        await conn.execute(
                            self.q.runs_lock_timeout_set, f"{max(1, round(lock_timeout * 1000))}ms"
                        )
                        done: int = await conn.fetchval(query, arg)
                except asyncpg.LockNotAvailableError:
                    return None
        return done
