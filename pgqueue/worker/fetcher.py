"""Claims batches of due jobs into the job buffer when there is room and a reason to look.

Reasons to claim: a notification for one of our queues, the last claim came back full
(a backlog), a known delayed job became due, the backstop poll, or start-up.

Jobs announced by id (``j:`` notifications, sent for each job scheduled due now) are
claimed by id when nothing else calls for a search: ``job_claim_announced`` is a
primary-key lookup, where ``job_claim_many`` searches two indexes per queue. Any other
reason to claim (a backlog, a pending search), a queue limit of ours, the periodic look at
the limits, or more ids than room make the claim a search, which finds the announced jobs
too. When the claim by id gets fewer jobs than it was given (another worker took them, or
a transaction holds their rows), one search follows ``RELOOK_S`` later. Room: the
jobs held (claimed, not finished) fell to the low watermark, and the result buffer is not
holding runners back. The low watermark is ``concurrency`` plus half of the jobs the
target holds beyond it: the claim goes out while half of the waiting jobs are still there
to run, so runners do not wait for its round trip (with slow jobs, whose target is about
``concurrency``, that is as soon as a runner is free and nothing waits).

The target adapts, so prefetching does not hoard: it is ``concurrency`` plus the jobs the
runners get through in ``PREFETCH_HORIZON`` claim round trips (Little's law, from the
measured claim time and run time), capped by ``prefetch``, in claims of at most
``CLAIM_MAX`` rows (decoding them holds the loop about 1 ms). No-op jobs get the whole
``prefetch``; one-second jobs about ``concurrency``, leaving the rest of the queue to other
workers. pgxjob and pgqueuer use a fixed batch and hoard; River caps fetches by free slots.

Delayed jobs: the fetcher sleeps until the earliest due time it knows of (``d:``
notifications, retries it wrote, ``job_next_due`` after a timer or poll claim).

Limited queues (``Scheduler.set_queue_limit``) are claimed and leased as ``limited.py``
says; a worker without them pays one look-up per heartbeat interval.
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
from pgqueue._models import ROW_ID, ROW_PRIORITY, ROW_QUEUE, ROW_RUN_AT, Job, Row
from pgqueue._signals import WorkerSignals
from pgqueue.store import Held, WorkerStore

from .job_buffer import Gate, JobBuffer
from .lease import Identity
from .limited import LimitedQueues
from .result_buffer import ResultBuffer
from .results import RunResult, RunStats
from .tally import Tally
from .turns import Turns

__all__ = ["Fetcher"]

PREFETCH_HORIZON = 8.0  # claim round trips' worth of work to hold beyond concurrency
CLAIM_MAX = 500  # rows one claim brings at most, however large prefetch is
DEFAULT_RTT_S = 0.002  # until the first claim is measured
FAST_POLL_S = 0.5  # poll interval while the LISTEN connection is down
EMPTY_CLAIM_REARM_S = 0.05  # a due job another worker holds: look again after this
RELOOK_S = 0.05  # a claim by id that missed some of its jobs: search once after this
_log = get_logger()
_CLAIM_ORDER = operator.itemgetter(ROW_PRIORITY, ROW_RUN_AT, ROW_ID)  # the claim index's order


class Fetcher(LimitedQueues):
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
        running: Callable[[], list[Job]] = list,
        turns: Turns | None = None,
    ) -> None:
        self._store = store
        self._turns = turns or Turns(enabled=False)  # the plain claim takes turns with the flush (turns.py)
        self._config = config
        self._identity = identity
        self._queues = list(config.queues)
        self._jobs = jobs
        self._results = results
        self._stats = stats
        self._clock = clock
        self._wake = asyncio.Event()
        self._pending = True  # a reason to claim that no claim has answered yet
        self._announced: list[int] = []  # ids of jobs due now, announced since the last claim
        self._backlog = False  # the last claim was full: more is probably due
        self._next_due: float | None = None  # monotonic deadline of the earliest known delayed job
        self._relook_at: float | None = None  # monotonic deadline of the search after a claim by id missed
        self._rtt = DEFAULT_RTT_S
        self._tau: float | None = None  # mean wall seconds per run, once measured
        self._seen_finished = 0
        self._seen_busy = 0.0
        self._low_water = config.concurrency + config.concurrency // 2  # until the first _want()
        self._held = held
        self._listening = True
        self._on_error = on_error
        self._poll_only = not config.listen  # no listener: poll at poll_interval, not the fast rate
        self._signals = signals or WorkerSignals()
        self._tally = tally  # metrics: one size per claim
        # Queue limits, from the database: the limited queues (claimed one by one through
        # job_claim_limited), the others (the plain claim), and when to look again.
        self._limited: tuple[str, ...] = ()
        self._slots: dict[str, int | None] = {}  # each limited queue's concurrency limit, if any
        self._limited_due = False  # a reason to claim the limited queues (only them)
        self._plain = self._queues
        self._due_queues = self._queues  # the queues job_next_due asks about (not the capped ones)
        self._limits_at = -math.inf  # monotonic time of the next look at the limits
        self._capped = False  # a limit held the last claim back: a run of ours ending retries
        self._retry_at: float | None = None  # monotonic deadline of a capped claim's retry
        # Leased queues (concurrency-only limits): their gates, shared with the job buffer.
        self._seen: tuple[str, ...] = ()  # every limited queue of ours at the last look
        self._gates = jobs.gates
        self._running = running  # the jobs in the runners now (a new gate counts them)
        jobs.on_done = self._on_gated_capacity
        self._lease_limit: dict[str, int] = {}  # each leased queue's concurrency limit
        self._lease_wid = 0  # the worker id the gates' slots were leased to
        self._leased_at = -math.inf  # monotonic time of the last lease call
        self._short_at: float | None = None  # a lease granted less than asked: ask again then
        self._gated_backlog = False  # a leased queue's claim came back full: claim it again
        self._target_now = 2 * config.concurrency  # the prefetch target at the last _want()

    @property
    def limited(self) -> tuple[str, ...]:
        """The queues of ours that had a limit at the last look (leased or claimed through it)."""
        return self._seen

    @property
    def gates(self) -> dict[str, Gate]:
        """The leased queues' gates: the slots leased, and the jobs running and held."""
        return self._gates

    # -- signals from other stages (all on the event loop, never awaited) --------------

    def notify_ready(self) -> None:
        """Jobs are due now in one of our queues (a notification, a reconnect, a release)."""
        self._pending = True
        self._wake.set()

    def notify_job(self, job_id: int) -> None:
        """One job is due now in one of our queues (a ``j:`` notification): claim it by id.

        Ids beyond the runners (a burst: the search takes them in priority order in one
        statement) ask for a search instead; ``_by_id_now`` decides for the ids kept.
        """
        if len(self._announced) >= self._config.concurrency:
            self._announced.clear()
            self.notify_ready()
            return
        self._announced.append(job_id)
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
        """A run finished: claim again if work waits and we fell to the low watermark; or idle."""
        if self._capped:  # its slot is free now: a reason to claim
            self._capped = False
            self._limited_due = True
        if self._pending or self._backlog or self._limited_due or self._announced:
            if self._stats.outstanding <= self._low_water:
                self._wake.set()
        elif not self._stats.outstanding:
            self._results.idle()

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
            now = clock.monotonic()  # once per cycle: the pickup's path runs through here
            look_ahead = self._deadlines_passed(now) or look_ahead
            if now >= next_poll:
                next_poll = now + self._poll_interval()
                self._pending = look_ahead = True
            lease_at = self._lease_at(now) if self._gates else None
            if lease_at is not None and lease_at <= now:
                await self._tend_leases_or_back_off(backoff)
                continue
            want = self._want()
            if want > 0 and self._announced and self._by_id_now(want, now):
                await self._claim_announced(want, backoff)
                continue
            if want > 0 and (self._pending or self._backlog or self._limited_due):
                look_ahead = await self._search(want, backoff, look_ahead=look_ahead)
                continue
            deadlines = (self._next_due, self._relook_at, self._retry_at, lease_at)
            timeout = min([next_poll, *(t for t in deadlines if t is not None)])
            timeout -= now
            # A loop timer, not a cancel scope: this runs once per claim cycle, on the pickup's path.
            timer = asyncio.get_running_loop().call_later(max(timeout, 0.0), self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()

    async def _claim_failed(self, exc: Exception, backoff: Backoff) -> None:
        delay = backoff.failed()
        _log.warning(CLAIM_FAILED, error=describe(exc), retry_in_s=delay)
        self._signals.claim_failed.fire()
        self._on_error(exc)
        await anyio.sleep(delay)

    async def _search(self, want: int, backoff: Backoff, *, look_ahead: bool) -> bool:
        """Claim for each reason pending; whether the next due time is still to be asked."""
        plain = self._pending or self._backlog  # the limited queues' own reasons claim only them
        self._pending = self._limited_due = False
        if plain:
            self._announced.clear()  # the search finds them
        try:
            got = await self._claim(want, plain=plain)
            if plain:
                self._backlog = got == want
                if not (got or self._stats.outstanding or self._pending or self._announced):
                    self._results.idle()  # a search found nothing and nothing runs: idle
            if plain and not self._backlog and look_ahead and self._due_queues:
                due = await self._store.job_next_due(self._due_queues, self._held)
                look_ahead = False
                if due is not None:
                    # Due now but held locked by another worker: look again shortly, not in a tight loop.
                    self.note_due(max(due, EMPTY_CLAIM_REARM_S) if got == 0 else due)
            backoff.succeeded()
        except Exception as exc:  # noqa: BLE001 - a lost connection or a restart must not stop the worker
            self._pending = plain or self._pending
            self._limited_due = True
            await self._claim_failed(exc, backoff)
        return look_ahead

    def _by_id_now(self, want: int, now: float) -> bool:
        """Whether the announced jobs are claimed by id now; if not, a search is made pending.

        Not while a search is called for (it finds them, in priority order with the rest),
        nor once a queue of ours has a limit (its jobs are claimed through the limit), nor
        when the limits are due a look (the search looks).
        """
        if self._pending or self._backlog:
            self._announced.clear()
            return False
        if len(self._announced) <= want and not self._seen and now < self._limits_at:
            return True
        self.notify_ready()
        return False

    async def _claim_announced(self, want: int, backoff: Backoff) -> None:
        """Claim the announced jobs by id; search a little later for those it did not get."""
        ids, self._announced = self._announced, []
        worker_id = self._identity.id
        try:
            async with self._turns.turn(urgent=len(self._jobs) < self._config.concurrency):
                rows = await self._store.job_claim_announced(ids, self._plain, want, worker_id, self._held)
            backoff.succeeded()
        except Exception as exc:  # noqa: BLE001 - as the search's failures
            self._pending = True  # the search after the back-off finds them
            await self._claim_failed(exc, backoff)
            return
        if not self._push(rows, worker_id, want):
            return
        self._signals.claimed.fire()
        if self._tally is not None:
            self._tally.claimed(len(rows))
        if len(rows) < len(ids) and self._relook_at is None:
            # Another worker took them, or a transaction holds their rows (a search now
            # would skip those too): search once, shortly.
            self._relook_at = self._clock.monotonic() + RELOOK_S
            self._wake.set()

    def _deadlines_passed(self, now: float) -> bool:
        """Make a claim pending for each timer that has passed; True if a delayed job became due."""
        if self._retry_at is not None and self._retry_at <= now:
            self._retry_at = None
            self._limited_due = True
        if self._relook_at is not None and self._relook_at <= now:
            self._relook_at = None
            self._pending = True  # a search, without asking for the next due time
        if self._next_due is not None and self._next_due <= now:
            self._next_due = None
            self._pending = True
            return True
        return False

    async def _claim(self, want: int, *, plain: bool = True) -> int:
        """Claim the limited queues, then (for ``plain``) the others; the plain claim's count.

        The count is what the caller compares with ``want`` to tell a backlog: limited
        queues say themselves when to claim again (``_limited_due``).
        """
        t0 = self._clock.monotonic()
        worker_id = self._identity.id
        if t0 >= self._limits_at:
            await self._look_at_limits(worker_id)
        if self._limited and not await self._claim_limited(want, worker_id):
            return 0
        got = 0
        queues = self._plain
        if plain and self._gates:
            queues, apart = await self._lease_for_claim(want, worker_id)
            for queue, n in apart:
                rows = await self._store.job_claim_many([queue], n, worker_id, self._held)
                if not self._push(rows, worker_id, n):
                    return 0
                self._gated_backlog = self._gated_backlog or len(rows) == n
                self._signals.claimed.fire()
                if self._tally is not None:
                    self._tally.claimed(len(rows))
        if plain and queues:
            # Urgent when fewer jobs wait than there are runners: waiting would idle them.
            async with self._turns.turn(urgent=len(self._jobs) < self._config.concurrency):
                rows = await self._store.job_claim_many(queues, want, worker_id, self._held)
            if not self._push(rows, worker_id, want):
                return 0
            got = len(rows)
            self._signals.claimed.fire()
            if self._tally is not None:
                self._tally.claimed(got)
        self._rtt = 0.8 * self._rtt + 0.2 * (self._clock.monotonic() - t0)
        return got

    def _push(self, rows: list[Row], worker_id: int, wanted: int) -> bool:
        """Hand claimed rows to the runners; False (and nothing handed) if the lease was lost."""
        if worker_id != self._identity.id:
            # The lease was lost while this claim was in flight: the reaper has freed these
            # jobs for others, so running them here would run them twice.
            return False
        if rows:
            rows.sort(key=_CLAIM_ORDER)  # runners take jobs in this order (the query leaves it to us)
            self._stats.outstanding += len(rows)
            if self._gates:
                for row in rows:
                    gate = self._gates.get(row[ROW_QUEUE])
                    if gate is not None:
                        gate.held += 1
            self._jobs.push_many([Job._from_row(r) for r in rows])  # noqa: SLF001 - the fast path
            self._stats.debug = debug_enabled()  # per batch: a logging change reaches the runners
            if self._stats.debug:  # a disabled debug call still costs structlog's dispatch
                _log.debug(BATCH_CLAIMED, jobs=len(rows), wanted=wanted)
        return True

    def _want(self) -> int:
        """How many jobs to claim now (0: no room)."""
        target = self._target()
        self._target_now = target
        concurrency = self._config.concurrency
        self._low_water = concurrency + (target - concurrency) // 2
        held = self._stats.outstanding
        if held > self._low_water or self._results.blocked():
            return 0
        return min(target - held, CLAIM_MAX)

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
