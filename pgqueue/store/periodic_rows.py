"""What the periodic enqueuer and listings exchange with a store: plain, backend-neutral rows.

The PostgreSQL store passes them as parallel arrays to one statement per round; the
memory store reads them as they are.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import NamedTuple

from .batch import NewJobs

__all__ = ["OVERLAP_NOTE", "PeriodicDeclaration", "PeriodicFire", "PeriodicFired", "PeriodicRow"]

OVERLAP_NOTE = "skipped (overlap)"  # last_note of a tick consumed without a job (overlap=False)


class PeriodicDeclaration(NamedTuple):
    """A declaration's row as upserted: its name and what listings show of it."""

    name: str
    schedule: str
    type: str
    queue: str


@dataclasses.dataclass(frozen=True, slots=True)
class PeriodicFire:
    """One tick a round offers the store: enqueued only if it is newer than the last consumed."""

    name: str
    tick: dt.datetime
    fresh: bool
    """Within its grace by the round's clock: a first tick fires only then."""
    catch_up: bool
    """``missed="latest"``: a late tick still fires once an earlier one was consumed."""
    overlap: bool
    """False: consumed without a job while the previous job of this declaration is live."""
    jobs: NewJobs
    """The job's queue, type, priority and timeout; its run_at is the tick."""
    params: str
    """The job's params, encoded."""


class PeriodicFired(NamedTuple):
    """What the store did with one offered tick (ticks it refused are not reported)."""

    name: str
    tick: dt.datetime
    job_id: int | None
    """The job enqueued; None when the tick was consumed without one, or the row is missing."""
    note: str | None
    """None: enqueued; ``OVERLAP_NOTE``; ``missing``: no row has the name (declare again)."""


class PeriodicRow(NamedTuple):
    """A row of the ``periodic`` table with the state of its last job."""

    name: str
    schedule: str
    type: str
    queue: str
    last_tick: dt.datetime | None
    last_job_id: int | None
    last_note: str | None
    last_state: str | None
    """The last job's state: live (``job_state()``) or ended (``run_end_state()``); None if unknown."""
