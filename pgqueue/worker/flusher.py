"""Writes finished runs in batches: one statement ends or puts back the jobs and logs their runs.

A flush is due at ``flush_max`` results, when the oldest is ``flush_age`` old (River's
batch completer and pgxjob's buffered results), or when the worker is idle (see
``result_buffer.py``). A failed write keeps the batch and retries
with backoff; while it fails the result buffer fills, runners block at its high-water mark
and claiming pauses, so nothing is dropped and nothing piles up without bound. The write is
fenced by (worker, attempt) in SQL, so retrying a flush that did commit changes nothing.
A failure that is neither an outage nor a conflict (a deadlock PostgreSQL broke by undoing
the flush) cannot pass by retrying: the batch is then written one result at a time, and a
result whose run row the database refuses ends its job without the row, loudly.

On shutdown the worker calls :meth:`Flusher.drain`, shielded from cancellation, so the
last results are written even when the worker is being cancelled.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import anyio

from pgqueue._backoff import Backoff
from pgqueue._clock import ignore
from pgqueue._errors import describe
from pgqueue._log import BATCH_FLUSHED, FLUSH_FAILED, RUN_UNWRITABLE, SHOULD_LOG_RUN_FAILED, get_logger
from pgqueue._models import ROW_ATTEMPT, ROW_ID, ROW_RUN_AT, Job, Outcome, RunInfo, ShouldLogRun
from pgqueue._signals import WorkerSignals
from pgqueue.store import FinalizeResult, FlushBatch, Held, WorkerStore

from .lease import Identity
from .result_buffer import ResultBuffer
from .results import RunResult
from .tally import Tally
from .turns import Turns

__all__ = ["BUILD_CHUNK", "Flusher", "add_results", "build_batch", "newest_attempts"]

WRITE_TIMEOUT_S = 30.0  # one flush statement may take this long before it is abandoned and retried
_log = get_logger()
_SUCCEEDED = Outcome.SUCCEEDED
BUILD_CHUNK = 100  # results added to a flush's arrays per event-loop step (about 60 µs of work)


def build_batch(items: list[RunResult], should_log_run: ShouldLogRun | None) -> FlushBatch:
    """Split results into ended and put-back jobs, as the arrays of one finalize statement."""
    batch = FlushBatch()
    add_results(batch, newest_attempts(items), should_log_run)
    return batch


def newest_attempts(items: list[RunResult]) -> list[RunResult]:
    """The results with one per job: its newest attempt (the finalize statement expects unique ids).

    A job appears twice only when a batch that put it back failed ambiguously (committed,
    but the acknowledgement was lost) and this worker claimed and ran it again before the
    retry: the older entry is then already written.
    """
    if len({r[0].row[ROW_ID] for r in items}) == len(items):
        return items
    latest: dict[int, RunResult] = {}
    for r in items:
        seen = latest.get(r.job.id)
        if seen is None or seen.job.attempt < r.job.attempt:
            latest[r.job.id] = r
    return list(latest.values())


def add_results(b: FlushBatch, items: list[RunResult], should_log_run: ShouldLogRun | None) -> None:
    """Append results (unique jobs) to ``b``: ended jobs to its end arrays, the others to its put-back ones.

    Runs once per job: fields are read by position from the claimed row and the results
    are unpacked as tuples, because a property call per field is a visible share of the
    per-job budget here. A logged success without a result adds four numbers; anything
    else is recorded with :meth:`FlushBatch.end_detail`, and a run's ``job.log`` lines
    with :meth:`FlushBatch.add_lines` (a batch where no handler logged sends no lines).
    """
    ids, attempts, started_at, finished_at = b.end_ids, b.end_attempts, b.end_started, b.end_finished
    for job, outcome, started, finished, error, result, retry, error_inc, lines in items:
        row = job.row
        log = should_log_run is None or _wants_log(
            should_log_run, job, RunInfo(outcome, retry is None, error)
        )
        if retry is None:
            if outcome is not _SUCCEEDED or result is not None or not log or error is not None:
                b.end_detail(len(ids), None if outcome is _SUCCEEDED else outcome.value, error, result, log)
            if lines is not None and log:  # lines go in the run's row: none without one
                b.add_lines(b.end_lines, len(ids), lines)
            ids.append(row[ROW_ID])
            attempts.append(row[ROW_ATTEMPT])
            started_at.append(started)
            finished_at.append(finished)
        else:
            if lines is not None and log:
                b.add_lines(b.back_lines, len(b.back_ids), lines)
            b.back_ids.append(row[ROW_ID])
            b.back_attempts.append(row[ROW_ATTEMPT])
            b.back_started.append(started)
            b.back_finished.append(finished)
            b.back_outcomes.append(outcome.value)
            b.back_errors.append(error)
            b.back_due_at.append(row[ROW_RUN_AT])
            b.back_retry_at.append(retry.at)
            b.back_delay.append(retry.delay)
            b.back_error_inc.append(error_inc)
            b.back_log.append(log)
            b.back_checkpoint.append(job._saved_checkpoint)  # noqa: SLF001 - the worker's own read of the run's state


def _wants_log(hook: ShouldLogRun, job: Job, run: RunInfo) -> bool:
    """Call the user's hook; one that raises logs the run (and says so).

    Letting it fail the flush would fail it again on every retry.
    """
    try:
        return bool(hook(job, run))
    except BaseException as exc:  # noqa: BLE001 - a broken hook must not stop the flusher (sync: no cancellation lands here)
        _log.error(SHOULD_LOG_RUN_FAILED, job_id=job.id, error=describe(exc))
        return True


class Flusher:
    """The only writer of results for one worker."""

    def __init__(
        self,
        *,
        store: WorkerStore,
        results: ResultBuffer[RunResult],
        identity: Identity,
        should_log_run: ShouldLogRun | None,
        on_put_back: Callable[[float], None],
        batch_max: int,
        on_error: Callable[[BaseException], None] = ignore,
        held: Held | None = None,
        signals: WorkerSignals | None = None,
        tally: Tally | None = None,
        turns: Turns | None = None,
    ) -> None:
        self._store = store
        self._results = results
        self._turns = turns or Turns(enabled=False)  # the flush takes turns with the plain claim (turns.py)
        self._identity = identity  # the worker id that fences the writes, and its clock offset
        self._should_log_run = should_log_run
        self._on_put_back = on_put_back
        # Results per flush at most (flush_max): a bigger batch catches up in fewer round trips
        # but holds the event loop (building and encoding it) and a server core for longer.
        self._batch_max = batch_max
        self._on_error = on_error
        self._held = held
        self._backoff = Backoff()
        self._lock = anyio.Lock()
        self._signals = signals or WorkerSignals()
        self._tally = tally  # metrics: each written flush is folded into it

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Flush whenever a batch is due, until cancelled."""
        task_status.started()
        while True:
            await self._results.wait_batch()
            if not await self.flush_once():
                await anyio.sleep(self._backoff.current())

    async def flush_once(self, *, urgent: bool = False) -> bool:
        """Write a batch of what is buffered now; on failure put it back and return False.

        Flushes are serialised (the background loop and a shutdown drain may both call
        this) and each write is shielded from cancellation with a deadline: a write in
        flight either commits or is rolled back and its results restored, never abandoned
        halfway with the batch forgotten. It takes its turn with the claim (``turns.py``)
        unless ``urgent`` or the result buffer holds runners back.
        """
        async with self._lock:
            items = self._results.take(self._batch_max)
            if not items:
                return True
            tally = self._tally
            started = time.perf_counter() if tally is not None else 0.0
            res: FinalizeResult | None = None
            error: BaseException | None = None
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(WRITE_TIMEOUT_S):
                    try:
                        res = await self._write(items, urgent=urgent or self._results.blocked())
                    except Exception as exc:  # noqa: BLE001 - keep the results and retry; never drop them
                        error = exc
                if res is None and error is not None and not self._transient(error):
                    # Not an outage nor a conflict: retrying the same batch would fail the
                    # same way for ever.
                    with anyio.move_on_after(WRITE_TIMEOUT_S):
                        res = await self._write_each(items)
                if res is None:
                    self._results.restore(items)
        if res is None:
            delay = self._backoff.failed()
            self._signals.flush_failed.fire()
            self._on_error(error or TimeoutError(f"flush timed out after {WRITE_TIMEOUT_S}s"))
            _log.warning(
                FLUSH_FAILED,
                results=len(items),
                error=describe(error) if error else f"timed out after {WRITE_TIMEOUT_S}s",
                retry_in_s=round(delay, 3),
            )
            return False
        self._backoff.succeeded()
        self._signals.flushed.fire()
        if tally is not None:
            written = len(res.ended) + len(res.put_back)
            if written < len(items):  # runs of jobs this worker no longer held: not its runs
                kept = res.ended | res.put_back.keys()
                items = [i for i in items if i[0].row[ROW_ID] in kept]
            tally.flushed(items, time.perf_counter() - started)
        if res.put_back_due_in is not None:
            self._on_put_back(res.put_back_due_in)
        _log.debug(BATCH_FLUSHED, results=len(items), ended=len(res.ended), put_back=len(res.put_back))
        return True

    async def _write(
        self, items: list[RunResult], *, with_runs: bool = True, urgent: bool = True
    ) -> FinalizeResult:
        # Built a chunk per loop step: building 500 results in one step holds the loop (and
        # the requests of an application sharing it) for 0.3 ms, up to 1 ms on a busy machine.
        batch = FlushBatch()
        items = newest_attempts(items)
        for start in range(0, len(items), BUILD_CHUNK):
            if start:
                await anyio.lowlevel.checkpoint()
            add_results(batch, items[start : start + BUILD_CHUNK], self._should_log_run)
        if not with_runs:
            batch.without_runs()
        identity = self._identity
        # The turn covers the statement only: the batch is built while a claim may be in flight.
        async with self._turns.turn(urgent=urgent):
            return await self._store.job_finalize_many(
                identity.id, batch, self._held, clock_offset=identity.clock_offset
            )

    def _transient(self, exc: BaseException) -> bool:
        """An outage, or a conflict the store's own reruns did not get past: keep the batch.

        A deadlock's victim is rolled back whole (the store writes it again at once, up to
        three runs); a batch that keeps losing is kept with its run rows and retried after
        the backoff, never written without them.
        """
        return self._store.is_unavailable(exc) or self._store.is_conflict(exc)

    async def _write_each(self, items: list[RunResult]) -> FinalizeResult | None:
        """Write a batch that failed for a reason other than an outage, one result at a time.

        A result whose run row cannot be written (a bug, or data the database refuses) still
        ends or puts back its job, without the row, and says so loudly: the alternative is
        a flusher that retries the same batch for ever while the worker stalls. Returns None
        (the whole batch is kept for a retry) if the database becomes unreachable meanwhile;
        what was written by then is fenced, so writing it again changes nothing. A conflict
        does the same (see :meth:`_transient`).
        """
        ended: set[int] = set()
        put_back: dict[int, dt.datetime] = {}
        due_in: list[float] = []
        logged = 0
        for item in items:
            try:
                try:
                    res = await self._write([item])
                except Exception as exc:
                    if self._transient(exc):
                        raise
                    _log.error(
                        RUN_UNWRITABLE,
                        job_id=item.job.id,
                        attempt=item.job.attempt,
                        error=describe(exc),
                        note="the job is finalized without its run row",
                    )
                    res = await self._write([item], with_runs=False)
            except Exception as exc:  # noqa: BLE001 - an outage: keep everything for the retry
                self._on_error(exc)
                return None
            ended |= res.ended
            put_back |= res.put_back
            logged += res.runs_logged
            if res.put_back_due_in is not None:
                due_in.append(res.put_back_due_in)
        return FinalizeResult(frozenset(ended), put_back, logged, min(due_in, default=None))

    async def drain(self, deadline_s: float) -> int:
        """Flush until the buffer is empty or ``deadline_s`` passes; returns results left unwritten.

        Shielded: it runs during shutdown, often inside a cancelled scope.
        """
        with anyio.CancelScope(shield=True), anyio.move_on_after(deadline_s):
            while len(self._results):
                if not await self.flush_once(urgent=True):
                    await anyio.sleep(self._backoff.current())
        return len(self._results)
