"""The hot table's own VACUUM: claims walk over dead index entries until one runs.

The hot table churns (insert, claim, delete), and the dead index entries of claimed jobs
sit at the head of the claim index, where every claim walks over them. Autovacuum's
server-wide naptime is too slow for a queue draining thousands of jobs a second, so each
worker checks the dead-tuple count every :data:`CHECK_S` seconds and one of them (an
advisory lock picks it) vacuums. Its own task: VACUUM can take seconds on a large backlog
and must never delay a heartbeat.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from pgqueue._log import JOBS_VACUUMED, get_logger
from pgqueue._signals import WorkerSignals
from pgqueue.store import WorkerStore

__all__ = ["CHECK_S", "Vacuum"]

CHECK_S = 1.0  # how often a worker looks at the hot table's dead tuples (one pg_stat read)
_log = get_logger()


class Vacuum:
    """The vacuum loop of one worker."""

    def __init__(
        self,
        *,
        store: WorkerStore,
        min_dead: int,
        interval: float,
        self_id: Callable[[], int],
        report: Callable[[BaseException, str], None],
        signals: WorkerSignals,
    ) -> None:
        self._store = store
        self._min_dead = min_dead
        self._interval = interval
        self._self_id = self_id
        self._report = report
        self._signals = signals

    async def run(self) -> None:
        """Check every ``interval`` seconds and vacuum past ``min_dead``, until cancelled."""
        while True:
            await anyio.sleep(self._interval)
            try:
                removed = await self._store.jobs_vacuum_if_needed(self._min_dead)
            except Exception as exc:  # noqa: BLE001 - maintenance is best effort; autovacuum remains
                self._report(exc, "vacuum")
                continue
            if removed is not None:
                _log.info(JOBS_VACUUMED, worker_id=self._self_id(), dead_tuples=removed)
                self._signals.vacuumed.fire()
