"""Times out runs: one task for all runners sleeps until the earliest deadline, then interrupts.

One task instead of a timer per job: a runner only writes its deadline and pokes the
watchdog (:meth:`Watchdog.arm`) when that deadline is earlier than the one it sleeps
towards. The watchdog is built before the runners (they arm it) and gets them when it
starts.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import anyio

from pgqueue._clock import Clock
from pgqueue._models import Outcome

from .runner import Runner

__all__ = ["Watchdog"]


class Watchdog:
    """Times out runs: sleeps until the earliest deadline among the runners, then interrupts.

    One task for all runners instead of a timer per job: a runner only writes its deadline
    and pokes the watchdog when that deadline is earlier than the one it sleeps towards.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._wake = asyncio.Event()
        self._next = math.inf
        self.timeouts = 0  # runs interrupted for their timeout

    def arm(self, deadline: float) -> None:
        """A run started with ``deadline``; wake early if it is the soonest."""
        if deadline < self._next:
            self._next = deadline
            self._wake.set()

    async def run(
        self,
        runners: Sequence[Runner],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Interrupt ``runners``' runs past their deadline, until cancelled."""
        task_status.started()
        while True:
            self._wake.clear()
            now = self._clock.monotonic()
            soonest = math.inf
            for r in runners:
                d = r.deadline
                if d is None:
                    continue
                if d <= now:
                    if r.interrupt(Outcome.TIMEOUT):
                        self.timeouts += 1
                elif d < soonest:
                    soonest = d
            self._next = soonest
            with anyio.move_on_after(soonest - now if soonest < math.inf else 3600.0):
                await self._wake.wait()
