"""Global limits of queues on PostgreSQL: ``limits.sql``, one method per statement."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import cast

import asyncpg

from pgqueue._limits import LimitedClaim, LimitSeen, QueueLimit, RateLimit
from pgqueue._models import Row
from pgqueue.store import Held

from .errors import again_on_conflict
from .pool import StoreBase

__all__ = ["LimitsMixin"]


class LimitsMixin(StoreBase):
    """``limits.sql``: the limited claim, the worker's look, and the API's writes and reads."""

    async def job_claim_limited(
        self,
        queue: str,
        limit: int,
        worker_id: int,
        done: Sequence[tuple[int, int]],
        held: Held | None = None,
    ) -> LimitedClaim:
        """Claim up to ``limit`` jobs of ``queue`` within its limits (``claim_limited``, sql/011)."""
        # As array literals: asyncpg encodes a list element by element (an ABC check each),
        # which costs a claim of a busy queue more than the text (hundreds of entries).
        ids = "{" + ",".join([str(d[0]) for d in done]) + "}"
        attempts = "{" + ",".join([str(d[1]) for d in done]) + "}"
        async with self._connection(held) as conn:
            rows = await conn.fetch(self.q.job_claim_limited, queue, limit, worker_id, ids, attempts)
        *claimed, last = rows  # the function always ends with its verdict row
        return LimitedClaim(cast("list[Row]", claimed), bool(last["capped"]), last["free_in"])

    async def queue_limited(self, queues: Sequence[str], held: Held | None = None) -> dict[str, LimitSeen]:
        """Which of these queues have a limit, with their concurrency limits and lease mode."""
        async with self._connection(held) as conn:
            rows = await conn.fetch(self.q.queue_limited, list(queues))
        return {r[0]: LimitSeen(r[1], r[2]) for r in rows}

    async def lease_slots(
        self, queue: str, worker_id: int, want: int, held: Held | None = None
    ) -> int | None:
        """Set this worker's slots of ``queue`` to as many of ``want`` as fit (``lease_slots``, sql/011)."""
        async with self._connection(held) as conn:
            granted: int | None = await conn.fetchval(self.q.lease_slots, queue, worker_id, want)
        return granted

    async def queue_limit_adopt(self, queues: Sequence[str], worker_id: int, held: Held | None = None) -> int:
        """Mark the jobs this worker holds in ``queues`` as counted by their limits."""
        async with self._connection(held) as conn:
            status: str = await conn.execute(self.q.queue_limit_adopt, list(queues), worker_id)
        return int(status.rsplit(maxsplit=1)[-1])

    async def queue_limit_set(self, limit: QueueLimit) -> QueueLimit:
        """Store ``limit`` and mark the queue's held jobs; the limit with its ``updated_at``.

        Marking locks the jobs workers hold, which their flushes lock too, in another order:
        when PostgreSQL breaks such a deadlock by failing this statement, it runs again.
        """
        rate = limit.rate
        args = (
            limit.queue,
            limit.concurrency,
            limit.per_key,
            limit.key,
            None if rate is None else rate.count,
            None if rate is None else rate.per.total_seconds(),
        )
        stamp: dt.datetime = await again_on_conflict(
            "queue_limit_set", lambda: self.pool.fetchval(self.q.queue_limit_set, *args)
        )
        return dataclasses.replace(limit, updated_at=stamp)

    async def queue_limit_remove(self, queue: str) -> bool:
        """Drop the queue's limit and rate window; False when it had none."""
        return await self.pool.fetchval(self.q.queue_limit_remove, queue) is not None

    async def queue_limit_list(self) -> list[QueueLimit]:
        """Every limit, by queue."""
        return [_limit(r) for r in await self.pool.fetch(self.q.queue_limit_list)]


def _limit(r: asyncpg.Record) -> QueueLimit:
    period = r["rate_period_s"]
    rate = None if r["rate_count"] is None else RateLimit(r["rate_count"], dt.timedelta(seconds=period))
    return QueueLimit(r["queue"], r["concurrency"], r["per_key"], r["key_param"], rate, r["updated_at"])
