"""The hot table from the scheduler's and the fetcher's side: insert, claim, release, cancel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import asyncpg

from pgqueue._errors import ConfigError
from pgqueue._models import CancelResult, Row
from pgqueue._records import CancelCounts, JobRecord, JobState
from pgqueue.store import CallerConnection, Held, NewJobs, ProgressReport
from pgqueue.store.records import Edges, job_record

from .errors import again_on_conflict
from .pool import StoreBase

__all__ = ["CANCEL_NOTE", "JobsMixin"]

CANCEL_NOTE = "cancelled before it ran"  # the note of the cancelled run of a job no worker held


class _Refused(Exception):  # noqa: N818 - internal control flow, never seen by callers
    """Dependencies stand in the way: rolls back the transaction that marked the others."""

    def __init__(self, blocked: dict[int, str]) -> None:
        super().__init__(blocked)
        self.blocked = blocked


class JobsMixin(StoreBase):
    """``jobs.sql``: one method per statement."""

    async def job_insert(self, conn: CallerConnection | None, jobs: NewJobs, params: str) -> int:
        """Insert one job and notify its queue, in one statement."""
        args = (*self._insert_args(jobs, params), jobs.trace, jobs.tenant)
        lane = self._lane
        if conn is None and lane is not None and not self._lane_busy:
            self._lane_busy = True
            try:
                rows = await lane.fetch(self.q.job_insert, *args)
                return cast("int", rows[0][0])
            finally:
                self._lane_busy = False
        return cast("int", await (self.pool if conn is None else conn).fetchval(self.q.job_insert, *args))

    def _insert_args(self, jobs: NewJobs, params: str | list[str]) -> tuple[object, ...]:
        """$1..$8 of every insert (each adds the trace and the tenant after its own)."""
        q, t, at, prio, timeout_s, delay_s, _, _ = jobs
        return (q, t, params, at, prio, self.channel, timeout_s, delay_s)

    async def job_insert_unique(
        self,
        conn: CallerConnection | None,
        jobs: NewJobs,
        params: str,
        *,
        key: str,
        keep_s: float,
        keep_after: Sequence[str],
    ) -> tuple[int, bool]:
        """Insert a job under ``key``, or find the job that holds it: (id, inserted).

        Two statements in one transaction (a savepoint inside the caller's): a lock on the
        key, then the check and insert with a newer snapshot, so concurrent schedulers of
        one key make one job.
        """
        args = (*self._insert_args(jobs, params), key, keep_s, list(keep_after), jobs.trace, jobs.tenant)
        row: object
        if conn is None:
            async with self.pool.acquire() as own, own.transaction():
                await own.execute(self.q.job_unique_lock, key)
                row = await own.fetchrow(self.q.job_insert_unique, *args)
        else:
            async with conn.transaction():
                isolation = await conn.fetchval(self.q.job_unique_lock, key)
                if isolation != "read committed":
                    raise ConfigError(
                        f"unique_key needs a read committed transaction on conn=, not {isolation}: "
                        "the check would not see jobs committed since the transaction began"
                    )
                row = await conn.fetchrow(self.q.job_insert_unique, *args)
        found = cast("asyncpg.Record", row)
        return int(found[0]), bool(found[1])

    async def job_insert_dependent(
        self, conn: CallerConnection | None, jobs: NewJobs, params: str, depends_on: Sequence[int]
    ) -> tuple[int | None, dict[int, str]]:
        """Insert a job waiting on ``depends_on``, or say which of them stand in the way.

        Two statements in one transaction (a savepoint inside the caller's): the live
        dependencies are locked and marked, then the ended ones are judged with a newer
        snapshot, which sees how a dependency that ended meanwhile ended. When one stands in
        the way the transaction is rolled back: nothing is written.
        """
        args = self._insert_args(jobs, params)
        deps = list(depends_on)
        try:
            if conn is not None:  # the caller's transaction: a deadlock is the caller's to retry
                async with conn.transaction():
                    return await self._insert_dependent(conn, args, deps, jobs)

            async def insert() -> tuple[int | None, dict[int, str]]:
                # Our locks (in id order) may cross a flush ending the dependencies in
                # another order; PostgreSQL then rolls this back: nothing was written.
                async with self.pool.acquire() as own, own.transaction():
                    return await self._insert_dependent(own, args, deps, jobs)

            return await again_on_conflict("job_insert_dependent", insert)
        except _Refused as refused:
            return None, refused.blocked

    async def _insert_dependent(
        self, conn: CallerConnection, args: tuple[object, ...], deps: list[int], jobs: NewJobs
    ) -> tuple[int | None, dict[int, str]]:
        live = [r[0] for r in await conn.fetch(self.q.job_depend_lock, deps)]
        rows = await conn.fetch(self.q.job_insert_dependent, *args, live, deps, jobs.trace, jobs.tenant)
        blocked = {int(r[0]): str(r[1]) for r in rows if r[1] is not None}
        if blocked:
            raise _Refused(blocked)  # leaves the transaction: its marks are rolled back
        return int(rows[0][0]), {}

    async def unique_keys_expire(self) -> int:
        """Drop the kept keys whose time is up; returns how many."""
        status: str = await self.pool.execute(self.q.unique_keys_expire)
        return int(status.rsplit(maxsplit=1)[-1])

    async def job_by_key(self, key: str) -> int | None:
        """The id of the job that holds ``key`` (live, or kept after its success)."""
        found: int | None = await self.pool.fetchval(self.q.job_by_key, key)
        return found

    async def job_insert_many(
        self,
        conn: CallerConnection | None,
        jobs: NewJobs,
        params: list[str],
        tenants: Sequence[str | None] | None = None,
    ) -> list[int]:
        """Insert jobs of one type and queue, one notification for the lot.

        ``tenants``: one per params value, or None (a NULL array: no tenants).
        """
        args = (*self._insert_args(jobs, params), jobs.trace, None if tenants is None else list(tenants))
        row = cast(
            "asyncpg.Record",
            await (self.pool if conn is None else conn).fetchrow(self.q.job_insert_many, *args),
        )
        return list(row[0] or [])  # an aggregate: always one row; NULL ids for no rows

    async def close(self) -> None:
        """Give back the fast lane's connection (before the pool closes)."""
        if self._lane is not None:
            await self._lane.release()

    async def job_claim_many(
        self, queues: Sequence[str], limit: int, worker_id: int, held: Held | None = None
    ) -> list[Row]:
        """Claim up to ``limit`` due jobs for ``worker_id`` (on ``held`` when given)."""
        return cast("list[Row]", await self._fetch(held, self.q.job_claim_many, queues, limit, worker_id))

    async def job_claim_announced(
        self, ids: Sequence[int], queues: Sequence[str], limit: int, worker_id: int, held: Held | None = None
    ) -> list[Row]:
        """Claim those of ``ids`` still ready in ``queues`` (at most ``limit``), as job_claim_many would."""
        rows = await self._fetch(held, self.q.job_claim_announced, queues, limit, worker_id, ids)
        return cast("list[Row]", rows)

    async def job_next_due(self, queues: Sequence[str], held: Held | None = None) -> float | None:
        """Seconds (by the server's clock) until the next delayed job in these queues is due."""
        async with self._connection(held) as conn:
            due: float | None = await conn.fetchval(self.q.job_next_due, queues)
        return due

    async def job_release_many(self, worker_id: int, ids: Sequence[int]) -> int:
        """Hand back claimed jobs that never started."""
        released: int = await self.pool.fetchval(self.q.job_release_many, worker_id, list(ids), self.channel)
        return released

    async def job_cancel(self, job_id: int) -> CancelResult:
        """End a waiting job as cancelled, or flag a claimed one and tell its worker.

        Cancelling a job cancels its dependents in turn (``settle_dependents``), whose locks
        may cross another transaction's: a deadlock's victim runs again.
        """
        return await again_on_conflict("job_cancel", lambda: self._cancel(job_id))

    async def _cancel(self, job_id: int) -> CancelResult:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(self.q.job_lock, job_id)
            if row is None:
                return CancelResult.NOT_FOUND
            if _unheld(row["worker_id"]):
                await conn.execute(self.q.job_cancel_pending, [job_id], CANCEL_NOTE, self.channel)
                return CancelResult.CANCELLED
            await conn.execute(self.q.job_cancel_running, [job_id], self.channel)
            return CancelResult.CANCELLING

    async def job_cancel_many(self, queue: str | None, type_: str | None) -> CancelCounts:
        """Cancel every live job of ``queue`` and/or ``type_`` (None matches any), in one transaction.

        Its locks are taken in id order, but another transaction (a flush ending a batch, an
        application's own) may hold some of them in another order: when PostgreSQL breaks
        such a deadlock by failing this transaction, nothing was changed and it runs again.
        """
        return await again_on_conflict("job_cancel_many", lambda: self._cancel_many(queue, type_))

    async def _cancel_many(self, queue: str | None, type_: str | None) -> CancelCounts:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(self.q.job_lock_many, queue, type_)
            waiting = [r[0] for r in rows if _unheld(r[1])]
            held = [r[0] for r in rows if not _unheld(r[1])]
            if waiting:
                await conn.execute(self.q.job_cancel_pending, waiting, CANCEL_NOTE, self.channel)
            if held:
                await conn.execute(self.q.job_cancel_running, held, self.channel)
            return CancelCounts(cancelled=len(waiting), cancelling=len(held))

    async def job_get(self, job_id: int) -> JobRecord | None:
        """A live or finished job with its runs; None when neither table knows the id."""
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            live = await conn.fetchrow(self.q.job_get, job_id)
            runs = await conn.fetch(self.q.job_runs_get_many, [job_id], True)  # noqa: FBT003 - $2
            edges = await conn.fetch(self.q.job_dependencies_many, [job_id])
        return job_record(job_id, live, runs, Edges(edges))

    async def job_list(
        self,
        *,
        below: int,
        queue: str | None,
        type_: str | None,
        state: JobState | None,
        limit: int,
        tenant: str | None = None,
    ) -> list[JobRecord]:
        """Up to ``limit`` jobs with ids below ``below``, newest first, live and finished.

        One snapshot (repeatable read) for the three reads, so a job that ends meanwhile is
        seen once, on one side.
        """
        live_state = None if state is None or state.finished else state
        done_state = None if state is None or not state.finished else state
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            # Planned for the filters given: a generic plan (our pool's default, right for the
            # worker's statements) cannot drop the "NULL or equal" filters and scans instead.
            await conn.execute(self.q.plan_custom)
            live = (
                []
                if done_state
                else await conn.fetch(self.q.job_list_live, below, queue, type_, live_state, limit, tenant)
            )
            done = (
                []
                if live_state
                else await conn.fetch(
                    self.q.job_list_finished, below, queue, type_, done_state, limit, tenant
                )
            )
            by_id = {r["id"]: r for r in live}
            ids = sorted([*by_id, *(r[0] for r in done)], reverse=True)[:limit]
            run_rows = await conn.fetch(self.q.job_runs_get_many, ids, False) if ids else []  # noqa: FBT003
            edges = Edges(await conn.fetch(self.q.job_dependencies_many, ids) if ids else [])
        runs: dict[int, list[asyncpg.Record]] = {}
        for row in run_rows:
            runs.setdefault(row["job_id"], []).append(row)
        records = [job_record(i, by_id.get(i), runs.get(i, []), edges) for i in ids]
        return [r for r in records if r is not None]

    async def job_retry_many(
        self, ids: Sequence[int] | None, queue: str | None, type_: str | None, states: Sequence[JobState]
    ) -> list[int]:
        """Put finished jobs whose last run ended in ``states`` back, due now; their ids."""
        row = await self.pool.fetchrow(
            self.q.job_retry_many,
            None if ids is None else list(ids),
            queue,
            type_,
            [s.value for s in states],
            self.channel,
        )
        assert row is not None  # noqa: S101 - a SELECT of scalars always returns a row
        return list(row[0] or [])

    async def job_delete(self, job_id: int) -> bool:
        """Remove a live job no worker holds; False when there is none to remove.

        Its dependents are cancelled in turn, whose locks may cross another transaction's: a
        deadlock's victim runs again.
        """
        return (
            await again_on_conflict(
                "job_delete", lambda: self.pool.fetchrow(self.q.job_delete, job_id, self.channel)
            )
            is not None
        )

    async def job_suspend(self, job_id: int) -> bool:
        """Make a waiting job unclaimable; False when it is not waiting."""
        return await self.pool.fetchval(self.q.job_suspend, job_id) is not None

    async def job_request_suspend(self, job_id: int, types: Sequence[str]) -> bool:
        """Flag a running job of one of ``types`` and tell its worker; False when there is none."""
        return (
            await self.pool.fetchrow(self.q.job_request_suspend, job_id, list(types), self.channel)
            is not None
        )

    async def job_resume(self, job_id: int) -> bool:
        """Make a suspended job claimable again and wake its queue; False when it is not suspended."""
        return await self.pool.fetchrow(self.q.job_resume, job_id, self.channel) is not None

    async def job_progress_many(self, worker_id: int, reports: Sequence[ProgressReport]) -> None:
        """Write the latest progress of the jobs this worker runs (fenced by worker and attempt).

        Its rows are locked in the order the plan meets them, as the worker's own flush
        locks its jobs: when the two deadlock, the victim is written again.
        """
        args = (
            worker_id,
            [r.job_id for r in reports],
            [r.attempt for r in reports],
            [r.fraction for r in reports],
            [r.message for r in reports],
        )
        await again_on_conflict(
            "job_progress_many", lambda: self.pool.execute(self.q.job_progress_many, *args)
        )

    async def job_await(self, job_id: int) -> bool:
        """Mark a live job so that its end is notified; False when it is not live."""
        return await self.pool.fetchrow(self.q.job_await, job_id, self.channel) is not None

    async def job_stats(self, tenant: str | None = None) -> list[tuple[str, str, JobState, int]]:
        """Live jobs (of ``tenant``, when given) counted by (queue, type, state)."""
        rows = await self.pool.fetch(self.q.job_stats, tenant)
        states = (
            JobState.PENDING,
            JobState.SCHEDULED,
            JobState.RUNNING,
            JobState.SUSPENDED,
            JobState.WAITING,
        )
        return [(r[0], r[1], state, int(r[2 + k])) for r in rows for k, state in enumerate(states)]

    async def job_cancel_requested_many(self, ids: Sequence[int]) -> dict[int, bool]:
        """Which of these jobs were flagged by cancel() (True) or, if not, by suspend() (False)."""
        rows = await self.pool.fetch(self.q.job_cancel_requested_many, list(ids))
        return {r[0]: r[1] for r in rows}


def _unheld(worker_id: int | None) -> bool:
    """No worker holds the job: claimable (NULL), suspended (0) or waiting on dependencies (-1)."""
    return worker_id is None or worker_id <= 0
