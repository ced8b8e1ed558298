"""A scheduler's pull consumer: leases jobs, waits for them, and writes what their holders report.

One per scheduler, created on the first pull call. Its identity is a ``workers`` row of
kind ``pull`` that owns every job it leases; the row is registered again if it was
forgotten (a consumer idle for ten minutes holding nothing is removed by the maintenance
leader's reaping round, ``pgqueue.maintenance.reaper``).

How it stays cheap:

- Waiting (:meth:`Consumer.dequeue`) shares one LISTEN subscription among every caller of
  the scheduler and wakes on the same ``r:<queue>`` / ``d:…`` notifications the workers
  use; between them it sleeps until the next delayed job is due, or ``RECHECK_S`` at most
  (the safety net for a lease that expired elsewhere: freeing it sends no notification).
- Writes (finish, fail, requeue) go through :class:`~.writes.Writes`: calls that arrive while a
  write is in flight join the next one, and each write is the worker's own flush statement
  (``job_finalize_many``, fenced by owner and attempt), so a consumer finishing a batch
  of leases at once pays one round trip, and runs, retries and results land in the same
  log, in the same shape, as a worker's.
- Expired leases are freed by the maintenance leader's reaping round, and by any consumer
  that is claiming or waiting, at most every ``SWEEP_S``: the pull API works with no
  Worker running.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence

import anyio

from pgqueue._codec import encode
from pgqueue._config import MAX_ATTEMPTS
from pgqueue._errors import ConfigError, ErrorWithRetry, JobCancelled, LeaseLost, PgQueueError, describe
from pgqueue._log import CONSUMER_LEAVE_FAILED, get_logger
from pgqueue._models import ROW_ATTEMPT, ROW_CANCEL_REQUESTED, ROW_COUNTED, ROW_TYPE, Job, Outcome, Row
from pgqueue._registry import Registry
from pgqueue.store import Subscription
from pgqueue.store.pull_rows import CLAIM_CLOCK, HOLDER, LEASE_UNTIL, LEASED_AT, LeaseClaim
from pgqueue.worker.results import decide_retry, error_text, new_result, storable

from .lease import Lease, parse_token
from .store import PullStore
from .wakeups import Wakeups
from .writes import Writes

__all__ = ["RECHECK_S", "SWEEP_S", "Consumer"]

RECHECK_S = 5.0  # a waiting dequeue looks again at least this often, notification or not
RELEASED_NOTE = "released unstarted by its pull consumer"
MIN_WAIT_S = 0.05  # after an empty claim, a waiting dequeue claims again only when woken or after this
SWEEP_S = 5.0  # expired leases are freed by a claiming consumer at most this often
SWEEP_BATCH = 1000  # expired leases freed per statement
SUSPENDED, WAITING = 0, -1  # the holder (jobs.worker_id) of a suspended job, of one waiting on others
LEAVE_TIMEOUT_S = 5.0  # closing waits this long at most for the row's removal
CLOSED = "the scheduler was closed: its pull calls have ended"
_log = get_logger()


class Consumer:
    """The pull side of one scheduler (see the module's docstring)."""

    def __init__(self, store: Callable[[], Awaitable[PullStore]], registry: Registry, schema: str) -> None:
        self.schema = schema
        """The schema, for errors translated at the lease's calls."""
        self._store = store
        self._registry = registry
        self._owner = 0  # our workers row (0: not registered yet)
        self._register_lock = anyio.Lock()
        self._offset = 0.0  # the database's clock minus ours, from the last claim
        self._last_sweep = -math.inf
        self._closed = False
        self._writes = Writes(self._open)
        self._wakeups = Wakeups(self._open)

    # -- claiming -------------------------------------------------------------------------

    async def _registered(self, store: PullStore, queues: Sequence[str]) -> int:
        async with self._register_lock:
            if not self._owner:
                before = time.time()
                self._owner, server = await store.consumer_register(queues)
                self._offset = server - (before + time.time()) / 2
            return self._owner

    async def _claim_with(
        self, claim: Callable[[PullStore, int], Awaitable[LeaseClaim]], queues: Sequence[str], lease_s: float
    ) -> list[Lease]:
        store = await self._open()
        await self._sweep(store)  # first: a job freed from an expired lease is claimable now
        for _ in range(2):  # a forgotten row: register again, once
            owner = await self._registered(store, queues)
            before = time.time()
            got = await claim(store, owner)
            if got.limited:
                raise ConfigError(
                    f"queue(s) {', '.join(got.limited)} have a global limit (set_queue_limit), which "
                    "only Workers honour: pull consumers lease from unlimited queues"
                )
            if got.registered:
                self._offset = got.server_time - (before + time.time()) / 2
                return await self._hand_out(got.rows, owner, lease_s)
            if self._owner == owner:
                self._owner = 0
        return []

    async def _open(self) -> PullStore:
        """The store, unless the scheduler was closed: a closing never reopens its pool."""
        if self._closed:
            raise PgQueueError(CLOSED)
        return await self._store()

    @contextlib.contextmanager
    def _ended_by_close(self) -> Iterator[None]:
        """End a call cut short by the scheduler's closing with the closing's error.

        Its pool closed under it: it ends as a call that starts after the closing does,
        not with the driver's error.
        """
        try:
            yield
        except Exception as exc:
            if self._closed:
                raise PgQueueError(CLOSED) from exc
            raise

    async def claim(
        self, n: int, types: Sequence[str] | None, queues: Sequence[str] | None, lease_s: float
    ) -> list[Lease]:
        """Lease up to ``n`` due jobs now (no waiting)."""
        with self._ended_by_close():
            store = await self._open()
            if queues is None:
                await self._sweep(store)  # first: a job freed from an expired lease lists its queue
            qs = list(queues) if queues is not None else await store.queues_with_jobs()
            if not qs:
                return []
            return await self._claim_with(
                lambda s, owner: s.lease_claim_many(qs, types, n, owner, lease_s), qs, lease_s
            )

    async def claim_one(self, job_id: int, lease_s: float) -> tuple[Lease | None, Row | None]:
        """Lease the given job if pending: (lease, None), or (None, its row for the error)."""
        with self._ended_by_close():
            leases = await self._claim_with(
                lambda s, owner: s.lease_claim_one(job_id, owner, lease_s), (), lease_s
            )
            if leases:
                return leases[0], None
            return None, await (await self._open()).lease_get(job_id)

    async def dequeue(
        self,
        types: Sequence[str] | None,
        queues: Sequence[str] | None,
        timeout: float | None,  # noqa: ASYNC109 - the API's deadline, checked between claims
        lease_s: float,
    ) -> Lease | None:
        """Lease one job, waiting up to ``timeout`` seconds (None: forever) for one to be due.

        It claims at least once, so ``timeout=0`` is a plain try.
        """
        deadline = math.inf if timeout is None else anyio.current_time() + timeout
        watched = None if queues is None else frozenset(queues)
        event: anyio.Event | None = None
        try:
            while True:
                event, sub = await self._wakeups.arm(event, watched)
                leases = await self.claim(1, types, queues, lease_s)
                if leases:
                    return leases[0]
                left = deadline - anyio.current_time()
                if left <= 0:
                    return None
                await self._sleep(event, sub, types, queues, left)
        finally:
            if event is not None:
                await self._wakeups.forget(event)

    async def _sleep(
        self,
        event: anyio.Event,
        sub: Subscription,
        types: Sequence[str] | None,
        queues: Sequence[str] | None,
        left: float,
    ) -> None:
        """Wait until woken, the next delayed job of ``types`` is due, or ``RECHECK_S``.

        Also until the subscription is lost; at least ``MIN_WAIT_S``: the claim just came
        back empty, so a job "due now" is another claim's, in flight.
        """
        store = await self._open()
        qs = list(queues) if queues is not None else await store.queues_with_jobs()
        due = await store.lease_next_due(qs, types) if qs else None
        wait = min(left, RECHECK_S if due is None else max(due, MIN_WAIT_S))
        with anyio.move_on_after(wait):
            async with anyio.create_task_group() as tg:

                async def lost() -> None:
                    await sub.wait_lost()
                    tg.cancel_scope.cancel()

                tg.start_soon(lost)
                await event.wait()
                tg.cancel_scope.cancel()

    async def _hand_out(self, rows: Sequence[Row], owner: int, lease_s: float) -> list[Lease]:
        """Leases for the claimed rows; cancelled or exhausted jobs are ended, not handed out.

        Once per leased job: the row is wrapped as it came (no copy), and the checks read
        it by position.
        """
        leases: list[Lease] = []
        refused: list[tuple[Lease, Outcome, str]] = []
        get_type = self._registry.get
        for row in rows:
            lease = Lease(self, Job._from_row(row), owner, row[LEASED_AT], row[LEASE_UNTIL], lease_s)  # noqa: SLF001 - the claim's row, as a worker wraps it
            jt = get_type(row[ROW_TYPE])
            limit = MAX_ATTEMPTS if jt is None else jt.max_attempts
            if row[ROW_CANCEL_REQUESTED]:
                refused.append((lease, Outcome.CANCELLED, "cancelled before it was leased"))
            elif row[ROW_COUNTED] > limit:
                note = f"gave up: this would be run {row[ROW_COUNTED]} of a job allowed max_attempts={limit}"
                refused.append(
                    (lease, Outcome.FAILED, f"{note}; the last run ended with: {lease.job.last_error}")
                )
            else:
                leases.append(lease)
        if refused:
            await asyncio.gather(*(self._end(*r) for r in refused))
        return leases

    async def _sweep(self, store: PullStore) -> None:
        now = time.monotonic()
        if now - self._last_sweep >= SWEEP_S:
            self._last_sweep = now
            await store.leases_release_expired(SWEEP_BATCH)

    # -- one lease ------------------------------------------------------------------------

    async def lease(self, token: str, lease_s: float) -> Lease:
        """The lease a token names, if it still holds its job; LeaseLost otherwise.

        ``lease_s`` is the duration its heartbeats extend it by unless told otherwise.
        """
        job_id, attempt, owner = parse_token(token)
        before = time.time()
        row = await (await self._open()).lease_get(job_id)
        if row is None or row[HOLDER] != owner or row[ROW_ATTEMPT] != attempt or row[LEASE_UNTIL] is None:
            raise _lost(token, job_id, row)
        self._offset = row[CLAIM_CLOCK] - (before + time.time()) / 2  # its run ends on the db clock
        return Lease(self, Job._from_row(row), owner, row[LEASED_AT], row[LEASE_UNTIL], lease_s)  # noqa: SLF001

    async def heartbeat(self, lease: Lease, duration: float) -> float:
        """Move the lease's deadline to now + ``duration``; the new deadline (epoch seconds)."""
        store = await self._open()
        got = await store.lease_heartbeat(lease.job.id, lease.owner, lease.attempt, duration)
        if got is None:
            raise _lost(lease.token, lease.job.id, await store.lease_get(lease.job.id))
        cancelled, until = got
        if cancelled:
            raise JobCancelled(lease.job.id)
        return until

    async def finish(self, lease: Lease, result: object) -> None:
        """End the leased job as succeeded with ``result``."""
        encoded = None if result is None else encode(result, what=f"result of job {lease.job.id}")
        await self._write(lease, Outcome.SUCCEEDED, None, encoded, None, 0)

    async def fail(
        self,
        lease: Lease,
        error: BaseException | str,
        retry_at: dt.datetime | dt.timedelta | float | None,
    ) -> dt.datetime | None:
        """Record a failed run; when the job runs again, or None (see :meth:`Lease.fail`)."""
        exc = error if isinstance(error, BaseException) else _ReportedError(error)
        if retry_at is not None:
            exc = ErrorWithRetry(exc, retry_at)
        if lease.job.row[ROW_CANCEL_REQUESTED] or await self._cancelled(lease):
            await self._end(lease, Outcome.CANCELLED, error if isinstance(error, str) else error_text(exc))
            return None
        jt = self._registry.get(lease.job.type)
        limit = MAX_ATTEMPTS if jt is None else jt.max_attempts
        again, text = decide_retry(
            lease.job, None if jt is None else jt.retry, exc, last_attempt=lease.job.row[ROW_COUNTED] >= limit
        )
        if isinstance(error, str):
            text = storable(error)
        return await self._write(lease, Outcome.FAILED, text, None, again, 1)

    async def release(self, lease: Lease) -> None:
        """Put the job back to run now without counting the attempt (see :meth:`Lease.release`)."""
        if await self._cancelled(lease):
            await self._end(lease, Outcome.CANCELLED, "released after it was cancelled")
            return
        again = ErrorWithRetry(_ReportedError(RELEASED_NOTE), 0)
        await self._write(lease, Outcome.SNOOZED, RELEASED_NOTE, None, again, 0)

    async def requeue(self, lease: Lease) -> bool:
        """Put the job back to run now, or end it (see :meth:`Lease.requeue`)."""
        if await self._cancelled(lease):
            await self._end(lease, Outcome.CANCELLED, "requeued after it was cancelled")
            return False
        jt = self._registry.get(lease.job.type)
        limit = MAX_ATTEMPTS if jt is None else jt.max_attempts
        counted: int = lease.job.row[ROW_COUNTED]
        if counted >= limit:
            note = f"requeued at its last allowed attempt ({counted} of max_attempts={limit})"
            await self._end(lease, Outcome.FAILED, note)
            return False
        again = ErrorWithRetry(_ReportedError("requeued by its consumer"), 0)
        await self._write(lease, Outcome.INTERRUPTED, "requeued by its consumer", None, again, 0)
        return True

    async def _cancelled(self, lease: Lease) -> bool:
        """Whether the job was cancelled while leased; LeaseLost if the lease no longer holds it."""
        row = await (await self._open()).lease_get(lease.job.id)
        if row is None or row[HOLDER] != lease.owner or row[ROW_ATTEMPT] != lease.attempt:
            raise _lost(lease.token, lease.job.id, row)
        return bool(row[ROW_CANCEL_REQUESTED])

    async def _end(self, lease: Lease, outcome: Outcome, note: str) -> None:
        await self._write(lease, outcome, storable(note), None, None, 0)

    async def _write(  # noqa: PLR0917 - one RunResult's fields, in its order
        self,
        lease: Lease,
        outcome: Outcome,
        error: str | None,
        result: str | None,
        retry: ErrorWithRetry | None,
        error_inc: int,
    ) -> dt.datetime | None:
        """Write one lease's run through the shared flush; LeaseLost when fenced out."""
        finished = time.time() + self._offset
        run = new_result(
            (lease.job, outcome, lease.leased_at, finished, error, result, retry, error_inc, None)
        )
        done = await self._writes.write(lease.owner, run)
        job_id = lease.job.id
        if job_id in done.ended:
            return None
        if job_id in done.put_back:
            return done.put_back[job_id]
        raise _lost(lease.token, job_id, await (await self._open()).lease_get(job_id))

    async def close(self, store: PullStore | None) -> None:
        """Drop the wake-up subscription and, holding no lease, the consumer's row.

        Leases still held stay valid (any process can finish them by token) until they
        finish or expire; the row goes later then. ``store`` is the open store, if any:
        closing never opens one. An error here is logged, not raised: the scheduler is
        closing either way.
        """
        self._closed = True
        self._wakeups.wake_all()  # waiting dequeues see the closing at once, and end
        await self._wakeups.close()
        owner, self._owner = self._owner, 0
        if owner and store is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(LEAVE_TIMEOUT_S):
                try:
                    await store.consumer_leave(owner)
                except Exception as exc:  # noqa: BLE001 - the row is forgotten later anyway
                    _log.warning(CONSUMER_LEAVE_FAILED, worker_id=owner, error=describe(exc))


class _ReportedError(PgQueueError):
    """An error a consumer reported as text (the HTTP API); stored without a traceback."""


def _lost(token: str, job_id: int, row: Row | None) -> LeaseLost:
    """LeaseLost, with the job's state now and, in a note, what became of it."""
    holder = None if row is None else row[HOLDER]
    if row is None:
        state, what = "ended", "it has ended (or never existed)"
    elif holder is None:
        state, what = "pending", "it is waiting to run again"
    elif holder == SUSPENDED:
        state, what = "suspended", "it is suspended"
    elif holder == WAITING:
        state, what = "waiting", "it is waiting for its dependencies"
    else:
        state, what = "running", f"it is held by worker {holder} at attempt {row[ROW_ATTEMPT]}"
    err = LeaseLost(token, job_id, state)
    err.add_note(f"job {job_id}: {what}")
    return err
