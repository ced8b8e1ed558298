"""Periodic declarations in the memory store, as ``periodic.sql`` keeps them on PostgreSQL.

One process, so the compare-and-set on a row's last tick needs no lock: a round's ticks
are taken in turn, and a tick not newer than its row's last one changes nothing, as on
PostgreSQL. Jobs are stored as ``schedule()`` stores them, due at their tick.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from pgqueue.store.batch import NewJobs
from pgqueue.store.periodic_rows import (
    OVERLAP_NOTE,
    PeriodicDeclaration,
    PeriodicFire,
    PeriodicFired,
    PeriodicRow,
)

from .base import MemoryBase
from .rows import end_state

__all__ = ["PeriodicMixin"]


@dataclasses.dataclass(slots=True)
class _Row:
    """A row of ``periodic``."""

    schedule: str
    type: str
    queue: str
    last_tick: dt.datetime | None = None
    last_job_id: int | None = None
    last_note: str | None = None


class PeriodicMixin(MemoryBase):
    """``periodic.sql``'s statements on this process's dicts."""

    _periodic: dict[str, _Row]

    def _periodic_rows(self) -> dict[str, _Row]:
        """The table, created on first use (the base class owns ``__init__``)."""
        try:
            return self._periodic
        except AttributeError:
            self._periodic = {}
            return self._periodic

    async def periodic_declare_many(self, rows: Sequence[PeriodicDeclaration]) -> None:
        """New names get a row, changed ones their new schedule, type and queue; last ticks stay."""
        table = self._periodic_rows()
        for r in rows:
            row = table.get(r.name)
            if row is None:
                table[r.name] = _Row(r.schedule, r.type, r.queue)
            else:
                row.schedule, row.type, row.queue = r.schedule, r.type, r.queue

    async def periodic_fire_many(self, fires: Sequence[PeriodicFire]) -> list[PeriodicFired]:
        """Each tick newer than its row's last one is consumed, with a job or noted for overlap."""
        table = self._periodic_rows()
        out: list[PeriodicFired] = []
        for f in fires:
            row = table.get(f.name)
            if row is None:
                out.append(PeriodicFired(f.name, f.tick, None, "missing"))
                continue
            if row.last_tick is not None and row.last_tick >= f.tick:
                continue
            if not (f.fresh or (f.catch_up and row.last_tick is not None)):
                continue
            row.last_tick = f.tick
            if not f.overlap and row.last_job_id is not None and row.last_job_id in self.jobs:
                row.last_note = OVERLAP_NOTE
                out.append(PeriodicFired(f.name, f.tick, None, OVERLAP_NOTE))
                continue
            jobs = NewJobs(f.jobs.queue, f.jobs.type, f.tick, f.jobs.priority, f.jobs.timeout_s)
            job = self._new_job(jobs, f.params)
            self._tell_queue(job.queue, job.run_at)
            row.last_job_id, row.last_note = job.id, None
            out.append(PeriodicFired(f.name, f.tick, job.id, None))
        return out

    async def periodic_list(self) -> list[PeriodicRow]:
        """Every row by name, with its last job's state (live, or from its last run)."""
        now = self.clock.time()
        out = []
        for name, row in sorted(self._periodic_rows().items()):
            state: str | None = None
            if row.last_job_id is not None:
                job = self.jobs.get(row.last_job_id)
                runs = self.runs.get(row.last_job_id)
                if job is not None:
                    state = job.state(now)
                elif runs:
                    state = end_state(runs[-1])
            last = (row.last_tick, row.last_job_id, row.last_note, state)
            out.append(PeriodicRow(name, row.schedule, row.type, row.queue, *last))
        return out

    async def periodic_delete(self, name: str) -> bool:
        """Forget a row; False when there was none."""
        return self._periodic_rows().pop(name, None) is not None
