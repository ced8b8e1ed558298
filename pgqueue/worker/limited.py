"""The fetcher's limited queues: which of its queues have a global limit, and how it claims them.

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
from collections.abc import Callable

import anyio

from pgqueue._backoff import Backoff
from pgqueue._clock import Clock
from pgqueue._config import WorkerConfig
from pgqueue._errors import describe
from pgqueue._limits import LimitSeen
from pgqueue._log import CLAIM_FAILED, QUEUE_LIMITS_SEEN, get_logger
from pgqueue._models import ROW_ATTEMPT, ROW_ID, ROW_QUEUE, Job, Row
from pgqueue._signals import WorkerSignals
from pgqueue.store import Held, WorkerStore

from .job_buffer import Gate, JobBuffer
from .lease import Identity
from .result_buffer import ResultBuffer
from .results import RunResult, RunStats
from .tally import Tally

__all__ = ["CAPPED_RETRY_S", "GIVE_BACK_S", "RATE_MARGIN_S", "LimitedQueues"]

CAPPED_RETRY_S = 0.25  # a limit held a claim back and no run of ours can free a slot: look again after this
RATE_MARGIN_S = 0.001  # wake this much after the rate window frees a start, not before it
GIVE_BACK_S = 0.1  # leased slots that held jobs do not need go back at most this often
_log = get_logger()


class LimitedQueues:
    """The :class:`~pgqueue.worker.fetcher.Fetcher`'s claims and slot leases of limited queues.

    A base class of the fetcher, not a stage of its own: limits change when and what the
    claim loop claims, so both read and set the same state, which the fetcher's
    ``__init__`` creates and these annotations declare.
    """

    # The fetcher's stage state.
    _store: WorkerStore
    _config: WorkerConfig
    _identity: Identity
    _queues: list[str]
    _jobs: JobBuffer[Job]
    _results: ResultBuffer[RunResult]
    _stats: RunStats
    _clock: Clock
    _wake: asyncio.Event
    _held: Held | None
    _on_error: Callable[[BaseException], None]
    _signals: WorkerSignals
    _tally: Tally | None
    _pending: bool
    _target_now: int
    _push: Callable[[list[Row], int, int], bool]
    # The limits, from the database (the fetcher's __init__ says what each one is).
    _limited: tuple[str, ...]
    _slots: dict[str, int | None]
    _limited_due: bool
    _plain: list[str]
    _due_queues: list[str]
    _limits_at: float
    _capped: bool
    _retry_at: float | None
    _seen: tuple[str, ...]
    _gates: dict[str, Gate]
    _running: Callable[[], list[Job]]
    _lease_limit: dict[str, int]
    _lease_wid: int
    _leased_at: float
    _short_at: float | None
    _gated_backlog: bool

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
