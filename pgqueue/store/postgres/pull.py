"""Pull consumers' statements (``pull.sql``): registration, leases, their expiry."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

import asyncpg

from pgqueue._models import Row
from pgqueue.store.pull_rows import CLAIM_CLOCK, CLAIM_LIMITED, LeaseClaim

from .pool import StoreBase

__all__ = ["PullMixin"]


class PullMixin(StoreBase):
    """One method per statement of ``pull.sql``."""

    async def consumer_register(self, queues: Sequence[str]) -> tuple[int, float]:
        """Insert this process's pull-consumer row; its id and the server's clock (epoch s)."""
        row = await self.pool.fetchrow(
            self.q.consumer_register, os.getpid(), socket.gethostname(), list(queues)
        )
        assert row is not None  # noqa: S101 - INSERT ... RETURNING returns its row
        return int(row[0]), float(row[1])

    async def queues_with_jobs(self) -> list[str]:
        """Every queue that has unclaimed jobs (due or not)."""
        queues: list[str] = await self.pool.fetchval(self.q.queues_with_jobs)
        return queues

    async def lease_claim_many(
        self, queues: Sequence[str], types: Sequence[str] | None, limit: int, owner: int, lease_s: float
    ) -> LeaseClaim:
        """Lease up to ``limit`` due jobs of ``types`` (None: any) in ``queues`` for ``owner``."""
        rows = await self.pool.fetch(
            self.q.lease_claim_many,
            list(queues),
            None if types is None else list(types),
            limit,
            owner,
            lease_s,
        )
        return _claim(rows)

    async def lease_claim_one(self, job_id: int, owner: int, lease_s: float) -> LeaseClaim:
        """Lease one given job if it is pending (unclaimed, due or not)."""
        return _claim(await self.pool.fetch(self.q.lease_claim_one, job_id, owner, lease_s))

    async def lease_next_due(self, queues: Sequence[str], types: Sequence[str] | None) -> float | None:
        """Seconds (server clock) until the next delayed job of ``types`` in ``queues`` is due."""
        due: float | None = await self.pool.fetchval(
            self.q.lease_next_due, list(queues), None if types is None else list(types)
        )
        return due

    async def lease_heartbeat(
        self, job_id: int, owner: int, attempt: int, lease_s: float
    ) -> tuple[bool, float] | None:
        """Move the lease's deadline on: (cancel requested, new deadline), or None if lost."""
        row = await self.pool.fetchrow(self.q.lease_heartbeat, job_id, owner, attempt, lease_s)
        return None if row is None else (bool(row[0]), float(row[1]))

    async def lease_get(self, job_id: int) -> Row | None:
        """The live job's claim row, lease times and holder (see LEASED_AT), or None."""
        row: Row | None = await self.pool.fetchrow(self.q.lease_get, job_id)
        return row

    async def leases_release_expired(self, batch: int) -> int:
        """Free up to ``batch`` jobs whose lease expired; returns how many."""
        n: int = await self.pool.fetchval(self.q.leases_release_expired, batch)
        return n

    async def consumers_forget(self, idle_s: float) -> int:
        """Remove pull consumers idle for ``idle_s`` seconds that hold nothing; returns how many."""
        return len(await self.pool.fetch(self.q.consumers_forget, idle_s))

    async def consumer_leave(self, owner: int) -> bool:
        """Remove this consumer's row unless it holds leases; whether it was removed."""
        status: str = await self.pool.execute(self.q.consumer_leave, owner)
        return status.endswith(" 1")


def _claim(rows: list[asyncpg.Record]) -> LeaseClaim:
    """The claim's rows (no row: the consumer's row is gone; a NULL job: nothing was due)."""
    if not rows:
        return LeaseClaim(registered=False, server_time=0.0, rows=[])
    server = rows[0][CLAIM_CLOCK]
    assert isinstance(server, float)  # noqa: S101 - date_part returns float8
    return LeaseClaim(
        registered=True,
        server_time=server,
        rows=rows if rows[0][0] is not None else [],
        limited=rows[0][CLAIM_LIMITED],
    )
