"""The worker's claims and flushes take turns on the database, unless one of them is urgent.

They are the worker's two heavy statements, each on its own connection. In flight at
once they keep two server backends busy beside the worker's own process. Where
PostgreSQL shares the machine's cores with the application (a small host, a sidecar, a
developer's laptop), the operating system then takes the core away from the worker's
event loop while those backends run: on a 2-core machine, during a full-speed drain, the
loop waited 3–5 ms for a CPU at p99 (the run-queue wait that ``pgqueue bench --phases
colocate`` reports), and every other task on that loop waited with it. Taken in turns, one
backend is busy at a time: the loop's p99 lag is 1–2 ms against 3–4 ms overlapped, for
about a tenth of the drain rate. With the server on another machine, or no other task on
the loop (``pgqueue worker``), overlapping the two costs no one and is worth throughput,
so the worker takes turns only when ``take_turns`` (by default: in an application whose
DSN names a server on this machine).

A statement waits for the other's turn only while waiting costs nothing: a claim goes at
once when fewer jobs wait in the buffer than there are runners (they would idle), a
flush when the result buffer holds runners back, and the shutdown's last flushes never
wait. No statement waits longer than ``MAX_WAIT_S`` for its turn, so a statement that
hangs (a database that stopped answering) delays the other by that much, never for good.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager

import anyio

__all__ = ["MAX_WAIT_S", "Turns"]

MAX_WAIT_S = 0.05  # longer than a claim or flush of a full batch takes on a healthy server


class Turns:
    """The claim's and the flush's turns: a fair lock that an urgent statement may pass by."""

    __slots__ = ("_lock", "_queued", "enabled", "waited")

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled  # False: every statement goes at once (take_turns=False)
        self._lock = asyncio.Lock()  # first come, first served: back-to-back flushes cannot starve a claim
        self.waited = 0  # statements that found the other's turn in progress (tests read it)
        self._queued = 0  # statements waiting for the lock (one may be woken and not yet run)

    def turn(self, *, urgent: bool) -> AbstractAsyncContextManager[None]:
        """Hold a turn for one statement: wait (bounded) for it, or go at once when ``urgent``.

        A class, not a generator-based context manager: the claim takes a turn on the
        pickup-latency path, where the generator's machinery is the costlier part.
        """
        return _Turn(self, urgent=urgent) if self.enabled else _NO_TURN


class _Turn:
    """One statement's turn (``Turns.turn``)."""

    __slots__ = ("_held", "_turns", "_urgent")

    def __init__(self, turns: Turns, *, urgent: bool) -> None:
        self._turns = turns
        self._urgent = urgent
        self._held = False

    async def __aenter__(self) -> None:
        turns = self._turns
        lock = turns._lock  # noqa: SLF001 - the turn is part of Turns
        # A released lock whose waiter has not run yet is not free: acquire() queues behind it.
        busy = lock.locked() or turns._queued > 0  # noqa: SLF001
        if not busy:
            await lock.acquire()  # free: asyncio's lock is taken at once, without a wait
            self._held = True
            return
        turns.waited += 1
        if self._urgent:
            return
        turns._queued += 1  # noqa: SLF001
        try:
            with anyio.move_on_after(MAX_WAIT_S):
                await lock.acquire()
                self._held = True
        finally:
            turns._queued -= 1  # noqa: SLF001

    async def __aexit__(self, *_exc: object) -> None:
        if self._held:
            self._turns._lock.release()  # noqa: SLF001


class _NoTurn:
    """Every statement goes at once (``take_turns=False``)."""

    __slots__ = ()

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *_exc: object) -> None:
        return None


_NO_TURN = _NoTurn()
