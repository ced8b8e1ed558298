"""Between the runners and the flusher: finished runs waiting to be written, bounded.

Why not an anyio memory stream: see ``job_buffer.py`` (a checkpoint per item costs a
visible share of the per-job budget). :meth:`ResultBuffer.put` asks its caller to wait
above ``high_water`` until the flusher drains it below ``low_water`` (hysteresis, as
River's batch completer does). Nothing is dropped.

A flush is due at ``flush_max`` results, when the oldest is ``flush_age`` old, or as soon
as the worker is idle (:meth:`ResultBuffer.idle`: it holds no job and knows of none
waiting): waiting would only delay the results (and ``wait()``) while nothing else
competes for the database. Flushes for idleness go out at most once per ``flush_age``
(the buffer's creation counts as one), so a trickle of jobs is still written in batches:
besides the age flushes, at most one more statement per ``flush_age``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["ResultBuffer"]

T = TypeVar("T")


class ResultBuffer(Generic[T]):
    """Finished runs waiting to be written, bounded with hysteresis.

    Owned by the runners (``put``) and the flusher (``wait_batch``/``take``/``restore``).
    """

    def __init__(
        self,
        *,
        flush_max: int,
        flush_age: float,
        high_water: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.flush_max = flush_max
        self.flush_age = flush_age
        self.high_water = high_water
        self.low_water = max(high_water // 2, 1)
        self._monotonic = monotonic
        self._items: list[T] = []
        # The batch the flusher took last: being written, or written (kept until the next take).
        self._taken: list[T] = []
        self._first_at = 0.0  # monotonic time the oldest buffered item arrived
        # When the last flush for idleness went out; the start counts as one, so a flush_age
        # set out of reach (tests, strict batching) keeps everything buffered.
        self._idle_at = monotonic()
        self._idle = False  # the worker held no job after one of the buffered results
        self._nonempty = asyncio.Event()
        self._full = asyncio.Event()  # >= flush_max: flush now
        self._drained = asyncio.Event()  # below low_water again after being above high_water
        self._drained.set()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> bool:
        """Add a result; True means the caller must ``await wait_drained()`` before the next.

        Synchronous on purpose: it runs once per job, and an ``async def`` costs a
        coroutine object per call even when it never waits.
        """
        items = self._items
        if not items:
            self._first_at = self._monotonic()
            self._nonempty.set()
        items.append(item)
        n = len(items)
        if n >= self.flush_max:
            self._full.set()
            if n >= self.high_water:
                self._drained.clear()
        return not self._drained.is_set()

    def idle(self) -> None:
        """The worker is idle: write what is buffered without waiting for its age.

        Called by the fetcher when the worker holds no job and knows of none waiting. With
        nothing buffered it is ignored: idleness is about the results already here, and a
        flag left standing would send the next burst's first result out alone.
        """
        if self._items:
            self._idle = True
            self._full.set()  # wakes wait_batch, which decides

    async def wait_drained(self) -> None:
        """Wait until the flusher has brought the buffer below its low-water mark."""
        await self._drained.wait()

    def unwritten(self) -> Iterator[T]:
        """Results not known to be written: the batch the flusher took last, then the buffered ones.

        The fetcher of a limited queue reads it: those runs have finished, so the slots
        their jobs still hold in the database are free for this worker. The batch is
        forgotten when the flusher next waits (its write is over by then); until then an
        entry may name a claim that has ended, which is harmless.
        """
        return itertools.chain(self._taken, self._items)

    def blocked(self) -> bool:
        """True while runners are held back (the flusher cannot keep up or is failing)."""
        return not self._drained.is_set()

    async def wait_batch(self) -> None:
        """Return when a flush is due: ``flush_max`` items, the oldest ``flush_age`` old, or idle.

        Idle (:meth:`idle`) brings the flush forward, to at once or to ``flush_age`` after
        the previous flush for idleness, whichever is later.
        """
        self._taken = []  # the flusher waits again: its last batch is written (or restored)
        while not self._items:
            self._nonempty.clear()
            await self._nonempty.wait()
        while 0 < len(self._items) < self.flush_max:
            now = self._monotonic()
            due = self._first_at + self.flush_age
            if due <= now:
                return
            if self._idle:
                idle_due = self._idle_at + self.flush_age
                if idle_due <= now:
                    self._idle_at = now
                    return
                due = min(due, idle_due)
            self._full.clear()
            try:
                await asyncio.wait_for(self._full.wait(), due - now)
            except TimeoutError:
                if self._idle:  # its turn came: counted as a flush for idleness
                    self._idle_at = self._monotonic()
                return  # due by the loop's clock: not looping on a coarser monotonic clock
            # woken: flush_max reached, or idle (look again)

    def take(self, limit: int) -> list[T]:
        """Remove and return the oldest ``limit`` items (the rest stay, as old as they were)."""
        if len(self._items) <= limit:
            items, self._items = self._items, []
        else:
            items, self._items = self._items[:limit], self._items[limit:]
        self._taken = items
        self._idle = False
        if len(self._items) < self.flush_max:
            self._full.clear()
        self._release_waiters()
        return items

    def restore(self, items: list[T]) -> None:
        """Put a batch that failed to flush back in front, oldest first, for the next try."""
        if not items:
            return
        self._taken = []
        self._items[:0] = items
        self._first_at = self._monotonic() - self.flush_age  # retry without waiting for age
        self._nonempty.set()
        if len(self._items) >= self.high_water:
            self._drained.clear()

    def _release_waiters(self) -> None:
        if not self._drained.is_set() and len(self._items) < self.low_water:
            self._drained.set()
