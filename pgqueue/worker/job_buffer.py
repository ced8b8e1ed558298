"""Between the fetcher and the runners: claimed jobs waiting for a runner.

Why not anyio memory streams: a stream ``receive`` costs a checkpoint (a trip through the
event loop, ~4 µs) per item, and the job path must stay near 20 µs per job in total to keep
up with the database. These buffers are deques and lists with an ``asyncio.Event`` that is
only awaited when the buffer is empty (or full); in a backlog nobody waits at all. pgqueue
runs on asyncio (asyncpg is asyncio-only), so the events are asyncio's.

Bounded by the fetcher, which never holds more than ``prefetch`` jobs claimed and unfinished.

Leased queues (concurrency limits kept by slot leases, see ``fetcher``): each has a
:class:`Gate` in ``gates``, sized by the fetcher to the slots it leased. A runner takes the
first job in claim order whose queue has a free slot (or no gate), so a full gate holds
back only its own queue's jobs; the runner gives the slot back with :meth:`JobBuffer.done`
(when ``taken`` is not empty). A worker without leased queues has no gates and nothing
taken, and pays one falsy check per pop and one per run.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Gate", "JobBuffer"]

T = TypeVar("T")


class Gate:
    """The slots this worker leased for one queue, and its jobs running and held here."""

    __slots__ = ("cap", "held", "running", "size")

    def __init__(self) -> None:
        self.size = 0  # slots leased: at most this many of the queue's jobs run at once
        self.cap = 0  # the most of its jobs to hold here: its slots' share of the prefetch
        self.running = 0  # jobs of the queue in a runner, taken through this gate
        self.held = 0  # jobs of the queue claimed and unfinished (waiting here or running)


class JobBuffer(Generic[T]):
    """Claimed jobs in claim order; the fetcher pushes batches, runners pop one at a time."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._ready = asyncio.Event()
        self._closed = False
        self.cancelled: set[int] = set()  # ids cancelled while waiting here; runners skip them
        self.suspending: set[int] = set()  # ids asked to suspend while waiting here
        self.gates: dict[str, Gate] = {}  # leased queues' gates (the fetcher keeps them); empty: none
        self.taken: dict[int, Gate] = {}  # job id -> the gate whose slot its run holds (runners check it)
        self.on_done: Callable[[Gate], None] = _nothing  # a gated run ended (the fetcher tends its leases)
        # Runners call pop(): the plain one, or the gated one while some queue has a gate
        # (set_gated), so a worker without leased queues pays nothing for gates here.
        self.pop: Callable[[], Awaitable[T | None]] = self._pop

    def push_many(self, items: list[T]) -> None:
        """Add a claimed batch and wake idle runners."""
        self._items.extend(items)
        if items:
            self._ready.set()

    async def _pop(self) -> T | None:
        """Next job, waiting while empty; None once closed and empty."""
        items = self._items
        while not items:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
            if self.gates:  # gates came while this runner waited: through them (not per job)
                return await self._pop_gated()
        return items.popleft()

    def set_gated(self) -> None:
        """Gates were added or removed: runners pop through them while there are any."""
        self.pop = self._pop_gated if self.gates else self._pop
        self._ready.set()

    async def _pop_gated(self) -> T | None:
        """The first job whose queue has a free slot (or no gate), taking the slot."""
        items, gates = self._items, self.gates
        while True:
            for i, item in enumerate(items):
                gate = gates.get(getattr(item, "queue", ""))
                if gate is None:
                    del items[i]
                    return item
                if gate.running < gate.size:
                    del items[i]
                    gate.running += 1
                    self.taken[getattr(item, "id", 0)] = gate
                    return item
            if self._closed and not items:
                return None
            self._ready.clear()
            await self._ready.wait()

    def done(self, item: T) -> None:
        """A run ended: give its slot back (if it took one) and wake runners waiting for it."""
        gate = self.taken.pop(getattr(item, "id", 0), None)
        if gate is not None:
            gate.running -= 1
            gate.held -= 1
            if gate.running == gate.size - 1 and self._items:
                # The gate was full, so jobs here may wait for this slot. Only then: waking
                # the runners idle on an empty buffer at every run's end costs them all a
                # trip through the event loop per job.
                self._ready.set()
            self.on_done(gate)

    def wake(self) -> None:
        """A gate grew: runners waiting for a slot look again."""
        self._ready.set()

    def count(self, queue: str) -> int:
        """Jobs of ``queue`` waiting here (linear: once, when the queue gets its gate)."""
        return sum(getattr(item, "queue", None) == queue for item in self._items)

    def holds(self, job_id: int) -> bool:
        """Whether a job with this id waits here (linear: only for rare cancel and suspend requests)."""
        return any(getattr(item, "id", None) == job_id for item in self._items)

    def take_all(self) -> list[T]:
        """Remove and return every job not yet started (shutdown hands them back)."""
        out = list(self._items)
        self._items.clear()
        if self.gates:
            for item in out:
                gate = self.gates.get(getattr(item, "queue", ""))
                if gate is not None:
                    gate.held = max(gate.held - 1, 0)
        return out

    def close(self) -> None:
        """No more jobs will come: runners return once the buffer is empty."""
        self._closed = True
        self._ready.set()

    def __len__(self) -> int:
        return len(self._items)


def _nothing(gate: Gate) -> None:
    """No fetcher listens (``pgqueue.testing`` runs jobs without one)."""
