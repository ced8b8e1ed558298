"""Between the fetcher and the runners: claimed jobs waiting for a runner.

Why not anyio memory streams: a stream ``receive`` costs a checkpoint (a trip through the
event loop, ~4 µs) per item, and the job path must stay near 20 µs per job in total to keep
up with the database. These buffers are deques and lists with an ``asyncio.Event`` that is
only awaited when the buffer is empty (or full); in a backlog nobody waits at all. pgqueue
runs on asyncio (asyncpg is asyncio-only), so the events are asyncio's.

Bounded by the fetcher, which never holds more than ``prefetch`` jobs claimed and unfinished.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

__all__ = ["JobBuffer"]

T = TypeVar("T")


class JobBuffer(Generic[T]):
    """Claimed jobs in claim order; the fetcher pushes batches, runners pop one at a time."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._ready = asyncio.Event()
        self._closed = False
        self.cancelled: set[int] = set()  # ids cancelled while waiting here; runners skip them
        self.suspending: set[int] = set()  # ids asked to suspend while waiting here

    def push_many(self, items: list[T]) -> None:
        """Add a claimed batch and wake idle runners."""
        self._items.extend(items)
        if items:
            self._ready.set()

    async def pop(self) -> T | None:
        """Next job, waiting while empty; None once closed and empty."""
        items = self._items
        while not items:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return items.popleft()

    def holds(self, job_id: int) -> bool:
        """Whether a job with this id waits here (linear: only for rare cancel and suspend requests)."""
        return any(getattr(item, "id", None) == job_id for item in self._items)

    def take_all(self) -> list[T]:
        """Remove and return every job not yet started (shutdown hands them back)."""
        out = list(self._items)
        self._items.clear()
        return out

    def close(self) -> None:
        """No more jobs will come: runners return once the buffer is empty."""
        self._closed = True
        self._ready.set()

    def __len__(self) -> int:
        return len(self._items)
