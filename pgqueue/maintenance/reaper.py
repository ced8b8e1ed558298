"""Reaping: free every job a dead worker held, record its cut runs, drop its row.

Each round also drops the expired unique keys that succeeded jobs kept (``unique_for``),
frees the jobs of pull leases whose deadline passed (the same way: the attempt counts, a
"crashed" run row) and forgets pull consumers that have been idle and hold nothing.

A worker is dead once its heartbeat is ``dead_after`` seconds old. Rescue is by heartbeat,
never by a job's age: a job running for an hour on a live worker is never run twice. The
lease calls :meth:`Reaper.reap_once` after each of this worker's healthy heartbeats (and
never right after an outage of its own, when the others may not have had a chance to
heartbeat yet).
"""

from __future__ import annotations

from collections.abc import Callable

from pgqueue._log import LEASES_EXPIRED, WORKERS_REAPED, get_logger
from pgqueue._signals import WorkerSignals
from pgqueue.pull.store import PullStore
from pgqueue.store import WorkerStore

__all__ = ["FORGET_IDLE_S", "LEASE_BATCH", "Reaper"]

LEASE_BATCH = 1000  # expired pull leases freed per round (the next round takes the rest)
FORGET_IDLE_S = 600.0  # a pull consumer's row idle this long and holding nothing is removed

_log = get_logger()


class Reaper:
    """Reaps dead workers on behalf of the schema."""

    def __init__(
        self,
        *,
        store: WorkerStore,
        self_id: Callable[[], int],
        dead_after: float,
        on_reaped: Callable[[], None],
        signals: WorkerSignals,
    ) -> None:
        self._store = store
        self._self_id = self_id
        self._dead_after = dead_after
        self._on_reaped = on_reaped  # jobs were freed: claim, some may be ours to run
        self._signals = signals
        self.jobs_released = 0
        """Runs of dead workers this reaper ended (crashed, or timeout) and put back; for metrics."""

    async def reap_once(self) -> None:
        """Reap the workers silent for ``dead_after`` seconds, if any (errors propagate)."""
        self_id = self._self_id()
        await self._store.unique_keys_expire()  # the same cadence suits them: cheap, by index
        released, reaped = await self._store.worker_reap(self._dead_after, self_id)
        expired = 0
        if isinstance(self._store, PullStore):  # a custom backend may have no leases
            expired = await self._store.leases_release_expired(LEASE_BATCH)
            await self._store.consumers_forget(FORGET_IDLE_S)
        self.jobs_released += released + expired
        if reaped:
            _log.warning(WORKERS_REAPED, worker_id=self_id, workers=reaped, jobs_released=released)
        if expired:
            _log.warning(LEASES_EXPIRED, worker_id=self_id, jobs_released=expired)
        if reaped or expired:
            self._signals.reaped.fire()
            self._on_reaped()
