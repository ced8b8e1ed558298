"""Claims batches of due jobs into the job buffer when there is room and a reason to look.

Reasons to claim: a notification for one of our queues, the last claim came back full
(a backlog), a known delayed job became due, the backstop poll, or start-up. Room: the
jobs held (claimed, not finished) fell to the low watermark, half the current target, and
the result buffer is not holding runners back.

The target adapts, so prefetching does not hoard: it is ``concurrency`` plus the jobs the
runners get through in ``PREFETCH_HORIZON`` claim round trips (Little's law, from the
measured claim time and run time), capped by ``prefetch``. No-op jobs get the full
``prefetch`` batch (one claim per hundreds of jobs); one-second jobs get about
``concurrency``, leaving the rest of the queue to other workers. pgxjob and pgqueuer use a
fixed batch and hoard; River caps fetches by free slots and pays a round trip per few jobs.

Delayed jobs: the fetcher sleeps until the earliest due time it knows of, learned from
``d:`` notifications, from retries this worker wrote, and from ``job_next_due`` after a
timer or poll claim; polling is only the backstop.
"""

from __future__ import annotations

import asyncio
import math
import operator
from collections.abc import Callable

import anyio

from pgqueue._backoff import Backoff
from pgqueue._clock import Clock, ignore
from pgqueue._config import WorkerConfig
from pgqueue._errors import describe
from pgqueue._log import BATCH_CLAIMED, CLAIM_FAILED, debug_enabled, get_logger
from pgqueue._models import ROW_ID, ROW_PRIORITY, ROW_RUN_AT, Job
from pgqueue._signals import WorkerSignals
from pgqueue.store import Held, WorkerStore

from .job_buffer import JobBuffer
from .lease import Identity
from .result_buffer import ResultBuffer
from .results import RunResult, RunStats
from .tally import Tally

__all__ = ["Fetcher"]

PREFETCH_HORIZON = 8.0  # claim round trips' worth of work to hold beyond concurrency
DEFAULT_RTT_S = 0.002  # until the first claim is measured
FAST_POLL_S = 0.5  # poll interval while the LISTEN connection is down
EMPTY_CLAIM_REARM_S = 0.05  # a due job another worker holds: look again after this
_log = get_logger()
_CLAIM_ORDER = operator.itemgetter(ROW_PRIORITY, ROW_RUN_AT, ROW_ID)  # the claim index's order


class Fetcher:
    """The claim loop of one worker."""

    def __init__(
        self,
        *,
        store: WorkerStore,
        config: WorkerConfig,
        identity: Identity,
        jobs: JobBuffer[Job],
        results: ResultBuffer[RunResult],
        stats: RunStats,
        clock: Clock,
        on_error: Callable[[BaseException], None] = ignore,
        held: Held | None = None,
        signals: WorkerSignals | None = None,
        tally: Tally | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._identity = identity
        self._queues = list(config.queues)
        self._jobs = jobs
        self._results = results
        self._stats = stats
        self._clock = clock
        self._wake = asyncio.Event()
        self._pending = True  # a reason to claim that no claim has answered yet
        self._backlog = False  # the last claim was full: more is probably due
        self._next_due: float | None = None  # monotonic deadline of the earliest known delayed job
        self._rtt = DEFAULT_RTT_S
        self._tau: float | None = None  # mean wall seconds per run, once measured
        self._seen_finished = 0
        self._seen_busy = 0.0
        self._low_water = config.concurrency // 2
        self._held = held
        self._listening = True
        self._on_error = on_error
        self._poll_only = not config.listen  # no listener: poll at poll_interval, not the fast rate
        self._signals = signals or WorkerSignals()
        self._tally = tally  # metrics: one size per claim

    # -- signals from other stages (all on the event loop, never awaited) --------------

    def notify_ready(self) -> None:
        """Jobs are due now in one of our queues (a notification, a reconnect, a release)."""
        self._pending = True
        self._wake.set()

    def note_due(self, delay_s: float) -> None:
        """A delayed job becomes due in ``delay_s`` seconds; wake then, not before.

        Delays come from the server's clock (``due - now()``) and become deadlines on this
        process's monotonic clock, so a worker clock that runs ahead or behind changes nothing.
        """
        deadline = self._clock.monotonic() + max(delay_s, 0.0)
        if self._next_due is None or deadline < self._next_due:
            self._next_due = deadline
            self._wake.set()

    def set_listening(self, listening: bool) -> None:  # noqa: FBT001 - a callback's signature
        """The listener's state: while it is down, poll every ``FAST_POLL_S`` instead."""
        self._listening = listening
        self._wake.set()

    def _poll_interval(self) -> float:
        cfg = self._config
        if self._listening or self._poll_only:
            return cfg.poll_interval
        return min(cfg.poll_interval, FAST_POLL_S)

    def on_capacity(self) -> None:
        """A run finished: claim again if work is waiting and we fell to the low watermark."""
        if (self._pending or self._backlog) and self._stats.outstanding <= self._low_water:
            self._wake.set()

    # -- the loop -------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Claim until cancelled (the worker cancels this scope to stop claiming)."""
        task_status.started()
        clock = self._clock
        next_poll = clock.monotonic() + self._poll_interval()
        look_ahead = True  # ask the database for the next due time after this claim
        backoff = Backoff()
        while True:
            self._wake.clear()
            if self._next_due is not None and self._next_due <= clock.monotonic():
                self._next_due = None
                self._pending = look_ahead = True
            if clock.monotonic() >= next_poll:
                next_poll = clock.monotonic() + self._poll_interval()
                self._pending = look_ahead = True
            want = self._want()
            if want > 0 and (self._pending or self._backlog):
                self._pending = False
                try:
                    got = await self._claim(want)
                    self._backlog = got == want
                    if not self._backlog and look_ahead:
                        due = await self._store.job_next_due(self._queues, self._held)
                        look_ahead = False
                        if due is not None:
                            # Due now but nothing claimable (another worker holds it locked):
                            # look again shortly rather than in a tight loop.
                            self.note_due(max(due, EMPTY_CLAIM_REARM_S) if got == 0 else due)
                    backoff.succeeded()
                except Exception as exc:  # noqa: BLE001 - a lost connection or a restart must not stop the worker
                    self._pending = True
                    delay = backoff.failed()
                    _log.warning(CLAIM_FAILED, error=describe(exc), retry_in_s=delay)
                    self._signals.claim_failed.fire()
                    self._on_error(exc)
                    await anyio.sleep(delay)
                continue
            timeout = next_poll - clock.monotonic()
            if self._next_due is not None:
                timeout = min(timeout, self._next_due - clock.monotonic())
            # A timer on the loop rather than a cancel scope: this runs once per claim cycle,
            # on the pickup-latency path.
            timer = asyncio.get_running_loop().call_later(max(timeout, 0.0), self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()

    async def _claim(self, want: int) -> int:
        t0 = self._clock.monotonic()
        worker_id = self._identity.id
        rows = await self._store.job_claim_many(self._queues, want, worker_id, self._held)
        if worker_id != self._identity.id:
            # The lease was lost while this claim was in flight: the reaper has freed these
            # jobs for others, so running them here would run them twice.
            return 0
        self._rtt = 0.8 * self._rtt + 0.2 * (self._clock.monotonic() - t0)
        if rows:
            rows.sort(key=_CLAIM_ORDER)  # runners take jobs in this order (the query leaves it to us)
            self._stats.outstanding += len(rows)
            self._jobs.push_many([Job._from_row(r) for r in rows])  # noqa: SLF001 - the fast path
            self._stats.debug = debug_enabled()  # per batch: a logging change reaches the runners
            _log.debug(BATCH_CLAIMED, jobs=len(rows), wanted=want)
        self._signals.claimed.fire()
        if self._tally is not None:
            self._tally.claimed(len(rows))
        return len(rows)

    def _want(self) -> int:
        """How many jobs to claim now (0: no room)."""
        target = self._target()
        self._low_water = target // 2
        held = self._stats.outstanding
        if held > self._low_water or self._results.blocked():
            return 0
        return target - held

    def _target(self) -> int:
        cfg, stats = self._config, self._stats
        done = stats.finished - self._seen_finished
        if done >= cfg.concurrency:
            self._tau = (stats.busy_s - self._seen_busy) / done
            self._seen_finished, self._seen_busy = stats.finished, stats.busy_s
        if self._tau is None:  # nothing measured yet: one spare job per runner
            return min(cfg.prefetch, 2 * cfg.concurrency)
        extra = cfg.concurrency * PREFETCH_HORIZON * self._rtt / max(self._tau, 1e-6)
        return int(min(cfg.prefetch, cfg.concurrency + math.ceil(extra)))
