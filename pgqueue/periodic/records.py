"""What ``list_periodic()`` returns, and its JSON form (the CLI's ``--json`` and the HTTP API)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

__all__ = ["PeriodicInfo", "periodic_json"]


@dataclasses.dataclass(frozen=True, slots=True)
class PeriodicInfo:
    """A periodic declaration with its next fire time and its last tick's outcome."""

    name: str
    """The declaration's name."""
    schedule: str
    """Its schedule as text: ``*/5 * * * *``, ``0 9 * * 1-5 (Europe/Paris)``, ``every 10m``."""
    type: str
    """The job type its ticks enqueue."""
    queue: str
    """The queue of those jobs."""
    next_fire_at: dt.datetime | None
    """The next tick a round would enqueue (a due one not yet enqueued, else the next one);
    None when the schedule never fires again."""
    last_tick: dt.datetime | None
    """The latest tick consumed (enqueued, or skipped for overlap); None before the first."""
    last_job_id: int | None
    """The job of the latest tick that enqueued one."""
    last_outcome: str | None
    """The last tick's outcome: its job's state (``pending``, ``running``, ``succeeded``,
    ``failed``…), ``skipped (overlap)``, or None (no tick yet, or its job is no longer
    known: deleted, or its runs pruned)."""
    declared: bool = True
    """Declared by this scheduler; False for a row that only the database holds (a
    declaration of another application, or one removed from the code: see
    ``remove_periodic``)."""


def periodic_json(info: PeriodicInfo) -> dict[str, Any]:
    """The record as JSON-ready data (times in ISO 8601)."""

    def iso(when: dt.datetime | None) -> str | None:
        return None if when is None else when.isoformat()

    return {
        "name": info.name,
        "schedule": info.schedule,
        "type": info.type,
        "queue": info.queue,
        "next_fire_at": iso(info.next_fire_at),
        "last_tick": iso(info.last_tick),
        "last_job_id": info.last_job_id,
        "last_outcome": info.last_outcome,
        "declared": info.declared,
    }
