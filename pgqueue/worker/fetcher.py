"""Claims batches of due jobs into the job buffer when there is room and a reason to look.

Reasons to claim: a notification for one of our queues, the last claim came back full
(a backlog), a known delayed job became due, the backstop poll, or start-up. Room: the
jobs held (claimed, not finished) fell to the low watermark, and the result buffer is not
holding runners back. The low watermark is ``concurrency`` plus half of the jobs the
target holds beyond it: the claim goes out while half of the waiting jobs are still there
to run, so runners do not wait for its round trip (with slow jobs, whose target is about
``concurrency``, that is as soon as a runner is free and nothing waits).

The target adapts, so prefetching does not hoard: it is ``concurrency`` plus the jobs the
runners get through in ``PREFETCH_HORIZON`` claim round trips (Little's law, from the
measured claim time and run time), capped by ``prefetch``. No-op jobs get the full
``prefetch`` batch (one claim per hundreds of jobs); one-second jobs get about
``concurrency``, leaving the rest of the queue to other workers. pgxjob and pgqueuer use a
fixed batch and hoard; River caps fetches by free slots and pays a round trip per few jobs.

Delayed jobs: the fetcher sleeps until the earliest due time it knows of, learned from
``d:`` notifications, from retries this worker wrote, and from ``job_next_due`` after a
timer or poll claim; polling is only the backstop.

Limited queues (``Scheduler.set_queue_limit``): the fetcher looks up which of its queues
have a limit, and their concurrency limits, before its first claim and again before the
first claim after each ``heartbeat_interval``, never per claim. Each limited queue is
claimed on its own through ``job_claim_limited`` (first, so their few slots are not starved
by a busy plain queue), asking at most its concurrency limit; the others together by the
plain claim, unchanged. A limited claim passes the runs this worker finished whose results
are not written yet: their jobs no longer run, so their slots are free here, and a worker
does not wait for its own flush to reuse them. When a limit held a claim back (or the
claim took every slot) the fetcher retries when a slot can free: after one of its own runs
ends (``on_capacity``), at once if some ended while the claim was in flight, when the rate
window frees a start (the claim says when), and otherwise after ``CAPPED_RETRY_S``, for
slots that other workers free and do not take again themselves (their own fetchers retry
at once). Nothing of this runs for a worker without limited queues but the look-up, once
per heartbeat interval.

Limits with ``per_key`` or ``rate`` count claimed jobs, so such a queue is not prefetched
beyond its free slots. A concurrency-only limit is kept by slot leases instead
(``lease_slots``, sql/011), and its queue is prefetched as any other: the worker leases
slots, claims the queue with the plain claim while it holds any (with none it leaves the
queue out, so it hoards no jobs it cannot run), and runs at most its slots' worth at once
(the queue's :class:`Gate` in the job buffer). Lease traffic is per claim cycle, never per
job: before a claim it asks for min(limit, jobs of the queue it holds + the claim's size)
when that is more than it has; it gives back what its held jobs do not need (everything
when it holds none) ``GIVE_BACK_S`` after its last lease call; a worker that got fewer slots
than it asked for asks again (a claim cycle) after ``CAPPED_RETRY_S``, or sooner after one
of its own runs ends. A worker with a backlog keeps its slots (the limit is global, not a
share), and frees the unused ones within ``GIVE_BACK_S`` once its backlog is gone.
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
from pgqueue._limits import LimitSeen
from pgqueue._log import BATCH_CLAIMED, CLAIM_FAILED, QUEUE_LIMITS_SEEN, debug_enabled, get_logger
from pgqueue._models import ROW_ATTEMPT, ROW_ID, ROW_PRIORITY, ROW_QUEUE, ROW_RUN_AT, Job, Row
from pgqueue._signals import WorkerSignals
from pgqueue.store import Held, WorkerStore

from .job_buffer import Gate, JobBuffer
from .lease import Identity
from .result_buffer import ResultBuffer
from .results import RunResult, RunStats
from .tally import Tally
from .turns import Turns

__all__ = ["Fetcher"]

PREFETCH_HORIZON = 8.0  # claim round trips' worth of work to hold beyond concurrency
DEFAULT_RTT_S = 0.002  # until the first claim is measured
FAST_POLL_S = 0.5  # poll interval while the LISTEN connection is down
EMPTY_CLAIM_REARM_S = 0.05  # a due job another worker holds: look again after this
CAPPED_RETRY_S = 0.25  # a limit held a claim back and no run of ours can free a slot: look again after this
RATE_MARGIN_S = 0.001  # wake this much after the rate window frees a start, not before it
GIVE_BACK_S = 0.1  # leased slots that held jobs do not need go back at most this often
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
        self._backlog = False  # the last claim was full: more is probably due
        self._next_due: float | None = None  # monotonic deadline of the earliest known delayed job
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
        if self._capped:  # its slot is free now: a reason to claim
            self._capped = False
            self._limited_due = True
        if (
            self._pending or self._backlog or self._limited_due
        ) and self._stats.outstanding <= self._low_water:
            self._wake.set()

    def _on_gated_capacity(self, gate: Gate) -> None:
        """A run of a leased queue ended: slots to give back or, when short, a reason to ask again.

        A leased queue claimed to its cap claims again once half of that cap has run. Per
        job of a leased queue, so it looks at that queue's gate only.
        """
        if self._gated_backlog and 2 * gate.held <= gate.cap:
            self._gated_backlog = False
            self._pending = True
            self._wake.set()
        if self._short_at is not None:
            self._short_at = min(self._short_at, self._leased_at + GIVE_BACK_S)
            self._wake.set()
        elif gate.held < gate.size:
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
            look_ahead = self._deadlines_passed(clock.monotonic()) or look_ahead
            if clock.monotonic() >= next_poll:
                next_poll = clock.monotonic() + self._poll_interval()
                self._pending = look_ahead = True
            lease_at = self._lease_at(clock.monotonic()) if self._gates else None
            if lease_at is not None and lease_at <= clock.monotonic():
                await self._tend_leases_or_back_off(backoff)
                continue
            want = self._want()
            if want > 0 and (self._pending or self._backlog or self._limited_due):
                plain = self._pending or self._backlog  # the limited queues' own reasons claim only them
                self._pending = self._limited_due = False
                try:
                    got = await self._claim(want, plain=plain)
                    if plain:
                        self._backlog = got == want
                    if plain and not self._backlog and look_ahead and self._due_queues:
                        due = await self._store.job_next_due(self._due_queues, self._held)
                        look_ahead = False
                        if due is not None:
                            # Due now but nothing claimable (another worker holds it locked):
                            # look again shortly rather than in a tight loop.
                            self.note_due(max(due, EMPTY_CLAIM_REARM_S) if got == 0 else due)
                    backoff.succeeded()
                except Exception as exc:  # noqa: BLE001 - a lost connection or a restart must not stop the worker
                    self._pending = plain or self._pending
                    self._limited_due = True
                    delay = backoff.failed()
                    _log.warning(CLAIM_FAILED, error=describe(exc), retry_in_s=delay)
                    self._signals.claim_failed.fire()
                    self._on_error(exc)
                    await anyio.sleep(delay)
                continue
            deadlines = (self._next_due, self._retry_at, lease_at)
            timeout = min([next_poll, *(t for t in deadlines if t is not None)])
            timeout -= clock.monotonic()
            # A timer on the loop rather than a cancel scope: this runs once per claim cycle,
            # on the pickup-latency path.
            timer = asyncio.get_running_loop().call_later(max(timeout, 0.0), self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()

    def _deadlines_passed(self, now: float) -> bool:
        """Make a claim pending for each timer that has passed; True if a delayed job became due."""
        if self._retry_at is not None and self._retry_at <= now:
            self._retry_at = None
            self._limited_due = True
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
            _log.debug(BATCH_CLAIMED, jobs=len(rows), wanted=wanted)
        return True

    async def _look_at_limits(self, worker_id: int) -> None:
        """Learn which of our queues are limited; count what we hold in newly limited ones."""
        found = await self._store.queue_limited(self._queues, self._held)
        limited = tuple(sorted(q for q, seen in found.items() if not seen.leased))
        new = set(limited) - set(self._limited)
        if new and self._stats.outstanding:
            # Claimed by the plain claim before we saw the limit: they count from now on.
            await self._store.queue_limit_adopt(sorted(new), worker_id, self._held)
        if tuple(sorted(found)) != self._seen:
            _log.info(QUEUE_LIMITS_SEEN, limited=sorted(found))
        self._seen = tuple(sorted(found))
        self._limited = limited
        self._slots = {q: seen.concurrency for q, seen in found.items() if not seen.leased}
        self._plain = [q for q in self._queues if q not in limited]
        self._due_queues = self._queues
        self._limits_at = self._clock.monotonic() + self._config.heartbeat_interval
        self._set_gates(found)

    def _set_gates(self, found: dict[str, LimitSeen]) -> None:
        """A gate for each leased queue; a queue no longer leased runs freely again."""
        leased = {q: seen.concurrency or 0 for q, seen in found.items() if seen.leased}
        gates = self._gates
        for q in leased.keys() - gates.keys():
            # Jobs claimed before the limit was seen count too: the running ones hold slots
            # (so nothing else starts until they are within the limit), the others wait.
            gate = Gate()
            running = [job for job in self._running() if job.queue == q]
            for job in running:
                self._jobs.taken[job.id] = gate
            gate.running = len(running)
            gate.held = self._jobs.count(q) + len(running)
            gates[q] = gate
        gone = gates.keys() - leased.keys()
        for q in gone:
            del gates[q]
        self._jobs.set_gated()
        self._lease_limit = leased
        if not gates:
            self._short_at = None

    # -- slot leases (concurrency-only limits) ------------------------------------------------

    def _lease_at(self, now: float) -> float | None:
        """When the leases need tending (a give-back, a retry, a look at the limits); None: not."""
        at = self._short_at
        if self._limits_at == -math.inf:
            return now
        if any(gate.held < gate.size for gate in self._gates.values()):
            # Not at once: a worker claiming often (for a busy queue besides) would ask for
            # slots and give them back on every claim cycle.
            t = self._leased_at + GIVE_BACK_S
            at = t if at is None else min(at, t)
        return at

    async def _tend_leases_or_back_off(self, backoff: Backoff) -> None:
        """Tend the leases; a failure is retried after a backoff, as a failed claim is."""
        try:
            await self._tend_leases()
        except Exception as exc:  # noqa: BLE001 - a lost connection or a restart must not stop the worker
            delay = backoff.failed()
            _log.warning(CLAIM_FAILED, error=describe(exc), retry_in_s=delay)
            self._on_error(exc)
            await anyio.sleep(delay)

    async def _tend_leases(self) -> None:
        """Give back slots held jobs do not need; when short, ask again (and claim again)."""
        worker_id = self._identity.id
        now = self._clock.monotonic()
        if now >= self._limits_at:
            await self._look_at_limits(worker_id)
        self._forget_lost_leases(worker_id)
        short = self._short_at is not None and self._short_at <= now
        if short:
            self._short_at = None
            self._pending = True  # the claim cycle asks for slots for what it is about to claim
        for q, gate in list(self._gates.items()):
            if gate.held < gate.size:
                await self._lease(q, gate, gate.held, worker_id)
            elif short and gate.size < min(self._lease_limit[q], gate.held):
                await self._lease(q, gate, min(self._lease_limit[q], gate.held), worker_id)

    async def _lease_for_claim(self, want: int, worker_id: int) -> tuple[list[str], list[tuple[str, int]]]:
        """Ask for the slots this claim may need; the plain claim's queues, and those claimed apart.

        A leased queue holds at most its slots' share of the prefetch target here (``cap``),
        so its jobs waiting for slots never crowd out the other queues' claims. It joins the
        plain claim when that claim cannot overshoot the cap, is claimed apart (its room,
        with job_claim_many as it is) when it could, and is left out when full or slotless.
        """
        self._forget_lost_leases(worker_id)
        out: list[str] = []
        apart: list[tuple[str, int]] = []
        for q, gate in list(self._gates.items()):
            desired = min(self._lease_limit[q], gate.held + want)
            if desired > gate.size:
                await self._lease(q, gate, desired, worker_id)
            gate.cap = max(gate.size, math.ceil(gate.size * self._target_now / self._config.concurrency))
            room = gate.cap - gate.held
            if gate.size == 0 or room <= 0:
                out.append(q)
            elif room < want:
                out.append(q)
                apart.append((q, room))
        if not out:
            return self._plain, apart
        slotless = [q for q in out if self._gates[q].size == 0]
        if slotless:
            self._due_queues = [q for q in self._due_queues if q not in slotless]
        return [q for q in self._plain if q not in out], apart

    async def _lease(self, queue: str, gate: Gate, want: int, worker_id: int) -> None:
        """Set our slots of ``queue`` to as many of ``want`` as fit; resize its gate."""
        granted = await self._store.lease_slots(queue, worker_id, want, self._held)
        self._leased_at = now = self._clock.monotonic()
        if granted is None:  # not leased any more: look at the limits before anything else
            self._limits_at = -math.inf
            return
        if granted > gate.size:
            self._jobs.wake()
        gate.size = granted
        if granted < want:
            self._short_at = now + CAPPED_RETRY_S if self._short_at is None else self._short_at

    def _forget_lost_leases(self, worker_id: int) -> None:
        """After a re-registration our slots went with the old worker row: none are leased."""
        if worker_id != self._lease_wid:
            self._lease_wid = worker_id
            for gate in self._gates.values():
                gate.size = 0

    async def _claim_limited(self, want: int, worker_id: int) -> bool:
        """Claim from each limited queue in turn, each within its limits; False if the lease was lost.

        Each queue's rows are handed on as they come back, so a failing claim of the next
        queue loses none of them.
        """
        limited = set(self._limited)
        rows = [r[0].row for r in self._results.unwritten()]
        done = [(row[ROW_ID], row[ROW_ATTEMPT]) for row in rows if row[ROW_QUEUE] in limited]
        finished = self._stats.finished
        capped: list[str] = []
        for queue in self._limited:
            slots = self._slots.get(queue)
            ask = want if slots is None else min(want, slots)
            claim = await self._store.job_claim_limited(queue, ask, worker_id, done, self._held)
            if not self._push(claim.rows, worker_id, ask):
                return False
            self._signals.claimed.fire()
            if self._tally is not None:
                self._tally.claimed(len(claim.rows))
            if claim.capped or len(claim.rows) == slots:
                # A limit held it back, or it took every slot: the next claim waits for one.
                capped.append(queue)
                self._on_capped(claim.free_in, finished)
            elif len(claim.rows) == ask:
                self._limited_due = True  # more may be due, and within the limits: claim now
        self._due_queues = [q for q in self._queues if q not in capped] if capped else self._queues
        return True

    def _on_capped(self, free_in: float | None, finished: int) -> None:
        """A limit held a claim back: arrange the retry for when a slot or a start can free."""
        if free_in is not None:  # the rate window: exactly when it frees a start
            delay = max(free_in, 0.0) + RATE_MARGIN_S
        elif self._stats.finished != finished:  # a run of ours ended meanwhile: its slot is free
            self._limited_due = True
            return
        else:
            self._capped = True  # the next run of ours that ends frees a slot (on_capacity)
            delay = CAPPED_RETRY_S  # or another worker's, which we only see by looking
        deadline = self._clock.monotonic() + delay
        if self._retry_at is None or deadline < self._retry_at:
            self._retry_at = deadline

    def _want(self) -> int:
        """How many jobs to claim now (0: no room)."""
        target = self._target()
        self._target_now = target
        concurrency = self._config.concurrency
        self._low_water = concurrency + (target - concurrency) // 2
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
