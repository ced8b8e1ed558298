"""Named events a worker's stages fire, so tests wait on what happened instead of sleeping.

River's ``TestSignal`` idea: each stage fires a :class:`Signal` at a moment tests care
about (a claim, a flush, a failed flush, a lost LISTEN connection, a lost lease…). Firing
costs one integer increment and one check for waiters; signals fire per batch or per
event, never per job. A test reads ``signal.count`` before acting and awaits
``signal.wait_count(n)``, or awaits ``signal.next()``, under its own deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses

__all__ = ["Signal", "WorkerSignals"]


class Signal:
    """A counter of occurrences that can be awaited."""

    __slots__ = ("_waiters", "count")

    def __init__(self) -> None:
        self.count = 0
        """How many times it fired."""
        self._waiters: list[tuple[int, asyncio.Event]] = []

    def fire(self) -> None:
        """It happened once more."""
        self.count += 1
        if self._waiters:
            for target, event in self._waiters:
                if self.count >= target:
                    event.set()

    async def wait_count(self, n: int) -> None:
        """Return once it has fired ``n`` times in all (at once if it already has)."""
        if self.count >= n:
            return
        waiter = (n, asyncio.Event())
        self._waiters.append(waiter)
        try:
            await waiter[1].wait()
        finally:
            self._waiters.remove(waiter)

    async def next(self) -> None:
        """Return the next time it fires."""
        await self.wait_count(self.count + 1)


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerSignals:
    """What a worker's stages report; one instance per worker (``worker.signals``)."""

    claimed: Signal = dataclasses.field(default_factory=Signal)
    """A claim statement returned (with jobs or without)."""
    claim_failed: Signal = dataclasses.field(default_factory=Signal)
    """A claim failed; the fetcher waits and retries."""
    flushed: Signal = dataclasses.field(default_factory=Signal)
    """A flush wrote its batch."""
    flush_failed: Signal = dataclasses.field(default_factory=Signal)
    """A flush failed; its results are kept for the retry."""
    listening: Signal = dataclasses.field(default_factory=Signal)
    """The listener (re)connected and LISTENs."""
    listener_lost: Signal = dataclasses.field(default_factory=Signal)
    """The LISTEN connection was lost or stopped answering probes."""
    heartbeat: Signal = dataclasses.field(default_factory=Signal)
    """A heartbeat went through."""
    lease_lost: Signal = dataclasses.field(default_factory=Signal)
    """The worker found its row reaped and registered again."""
    cancel_noted: Signal = dataclasses.field(default_factory=Signal)
    """A cancel request reached this worker (a notification, or the heartbeat's backstop)."""
    suspend_noted: Signal = dataclasses.field(default_factory=Signal)
    """A suspend request reached this worker (a notification, or the heartbeat's backstop)."""
    reaped: Signal = dataclasses.field(default_factory=Signal)
    """This worker reaped at least one dead worker."""
    progress_written: Signal = dataclasses.field(default_factory=Signal)
    """The coalesced progress reports of running jobs were written."""
    vacuumed: Signal = dataclasses.field(default_factory=Signal)
    """This worker vacuumed the hot table."""
    leader_elected: Signal = dataclasses.field(default_factory=Signal)
    """This worker took the maintenance-leader lock."""
    leader_lost: Signal = dataclasses.field(default_factory=Signal)
    """This worker lost the leader lock (its session ended or stopped answering)."""
