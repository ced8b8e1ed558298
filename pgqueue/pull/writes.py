"""A pull consumer's writes: lease reports coalesced into the worker's flush statement.

Calls that arrive while a write is in flight join the next one, and each write is the
worker's own ``job_finalize_many`` (fenced by owner and attempt), so finishing a batch of
leases at once pays one round trip, and runs, retries and results land in the same log,
in the same shape, as a worker's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel

from pgqueue.store import FinalizeResult
from pgqueue.worker.flusher import build_batch
from pgqueue.worker.results import RunResult

from .store import PullStore

__all__ = ["WRITE_MAX", "Writes"]

WRITE_MAX = 1000  # lease writes per statement


class _Write:
    """One lease's report waiting to be written, and the caller waiting for it."""

    __slots__ = ("outcome", "owner", "result", "wake")

    def __init__(self, owner: int, result: RunResult) -> None:
        self.owner = owner
        self.result = result
        self.outcome: FinalizeResult | Exception | None = None  # set by the round that wrote it
        self.wake: asyncio.Future[None] | None = None  # set while its caller waits

    def settle(self, outcome: FinalizeResult | Exception) -> None:
        self.outcome = outcome
        self.poke()

    def poke(self) -> None:
        """Wake the waiting caller: its outcome is in, or it is its turn to write."""
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)


class Writes:
    """Lease reports coalesced into the worker's flush statement, one per owner per round.

    A caller with nothing in flight writes a round: every report waiting then (callers
    scheduled in the same tick join it). Callers arriving meanwhile wait; when the round is
    written, the writer returns and hands the next round to the oldest waiting caller, so
    no caller writes for others for longer than its own round. The round is shielded, so a
    cancelled caller does not strand the others' reports; a failed round fails every report
    it took (nothing was written or, if the answer was lost after a commit, a repeat is
    fenced). A caller cancelled while waiting withdraws its report if no round took it.
    """

    def __init__(self, store: Callable[[], Awaitable[PullStore]]) -> None:
        self._store = store
        self._pending: list[_Write] = []
        self._writing = False

    async def write(self, owner: int, result: RunResult) -> FinalizeResult:
        """Write ``result`` for the lease ``owner`` holds; what its statement changed."""
        entry = _Write(owner, result)
        self._pending.append(entry)
        while entry.outcome is None:
            if not self._writing:
                self._writing = True
                try:
                    with anyio.CancelScope(shield=True):
                        await anyio.lowlevel.checkpoint()  # this tick's callers join the round
                        await self._round()
                finally:
                    self._writing = False
                    if self._pending:
                        self._pending[0].poke()  # the next round is the oldest waiter's
                continue
            entry.wake = asyncio.get_running_loop().create_future()
            try:
                await entry.wake
            except BaseException:
                if entry.outcome is None and entry in self._pending:
                    self._pending.remove(entry)
                    if not self._writing and self._pending:
                        self._pending[0].poke()
                raise
        if isinstance(entry.outcome, Exception):
            raise entry.outcome
        return entry.outcome

    async def _round(self) -> None:
        round_: list[_Write] = []
        later: list[_Write] = []
        seen: set[int] = set()
        for w in self._pending:  # one entry per job per statement; a repeat waits a round
            key = w.result.job.id
            (later if key in seen or len(round_) >= WRITE_MAX else round_).append(w)
            seen.add(key)
        self._pending = later
        by_owner: dict[int, list[_Write]] = {}
        for w in round_:
            by_owner.setdefault(w.owner, []).append(w)
        for owner, writes in by_owner.items():
            try:
                store = await self._store()
                done = await store.job_finalize_many(owner, build_batch([w.result for w in writes], None))
            except Exception as exc:  # noqa: BLE001 - handed to every caller of this round
                for w in writes:
                    w.settle(exc)
                continue
            for w in writes:
                w.settle(done)
