"""A periodic declaration, checked: what to enqueue, on which ticks, and the policies.

Policies, decided per tick with the clock of the process that runs the round:

- ``missed="skip"`` (default): a tick is enqueued only while it is at most ``grace`` old.
  Ticks that nobody enqueued in time (no process was up, the database was down) are
  dropped.
- ``missed="latest"``: after such a gap the latest missed tick is enqueued once, at once;
  the older ones are dropped. A declaration that never fired has missed nothing: its
  first tick is enqueued only within its grace (a new daily job deployed in the
  afternoon waits for its next tick instead of running at once).
- ``grace``: by default half the gap to the following tick, at most 60 s (30 s for a
  minutely cron, 5 s for ``every=10s``, 60 s for an hourly one).
- ``overlap=False``: a tick whose previous job (of this declaration) is still live, in any
  state, is consumed without a job and noted ``skipped (overlap)``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

from pgqueue._config import check_name, check_priority
from pgqueue._errors import ConfigError, check_delay

from .ticks import CronTicks, EveryTicks, check_timezone

__all__ = ["GRACE_MAX_S", "MISSED_POLICIES", "Missed", "PeriodicSpec", "Window", "declare"]

GRACE_MAX_S = 60.0  # the default grace's ceiling: a tick more than a minute late is missed
MISSED_POLICIES = ("skip", "latest")
Missed = Literal["skip", "latest"]


class Window(NamedTuple):
    """A declaration's ticks around a moment: valid for every moment until ``following``.

    A round keeps each declaration's window and computes a new one only once its
    ``following`` tick has passed: cron ticks cost croniter calls, and most rounds are
    for other declarations' ticks.
    """

    latest: dt.datetime | None
    """The latest tick at or before the moment (None: none)."""
    following: dt.datetime | None
    """The tick after ``latest`` (None: no more ticks)."""

    def holds(self, now: dt.datetime) -> bool:
        """Whether this is still the window around ``now``."""
        return (self.latest is None or self.latest <= now) and (
            self.following is None or now < self.following
        )


@dataclasses.dataclass(frozen=True, slots=True)
class PeriodicSpec:
    """One periodic declaration (``@scheduler.periodic`` or ``add_periodic``), checked."""

    name: str
    """Unique among declarations; the key of its row in the ``periodic`` table."""
    ticks: CronTicks | EveryTicks
    """When it fires."""
    type: str
    """The job type its ticks enqueue (checked against the registry when enqueuing)."""
    params: object
    """The params of every job it enqueues (validated by the type's model, if any)."""
    queue: str | None
    """The jobs' queue; None: the type's."""
    priority: int
    """The jobs' priority."""
    missed: Missed
    """What a tick enqueued late becomes: ``skip`` (dropped) or ``latest`` (the latest runs once)."""
    overlap: bool
    """False: a tick is skipped while the previous job of this declaration is live."""
    grace_s: float | None
    """Seconds a tick stays enqueueable; None: half the gap to the next tick, at most 60 s."""

    @property
    def schedule(self) -> str:
        """The schedule as text (``*/5 * * * * (Europe/Paris)``, ``every 10s``)."""
        return self.ticks.text

    def window(self, now: dt.datetime) -> Window:
        """The ticks around ``now``: the latest at or before it, and the one after that."""
        tick = self.ticks.latest(now)
        return Window(tick, self.ticks.following(now if tick is None else tick))

    def grace(self, tick: dt.datetime, following: dt.datetime | None = None) -> float:
        """Seconds after ``tick`` during which it is still enqueued on time.

        ``following``: the tick after it, when the caller has it (else computed).
        """
        if self.grace_s is not None:
            return self.grace_s
        if following is None:
            following = self.ticks.following(tick)
        gap = GRACE_MAX_S * 2 if following is None else (following - tick).total_seconds()
        return min(gap / 2, GRACE_MAX_S)

    def due(self, now: dt.datetime, window: Window | None = None) -> tuple[dt.datetime, bool] | None:
        """The tick a round at ``now`` offers the database, and whether it is on time.

        None when nothing can fire: no tick yet, or (``skip``) the latest tick is past its
        grace. The database enqueues the tick only if it is newer than the last one
        consumed, and a late (``latest``) tick only if an earlier one was. ``window``: this
        declaration's window around ``now``, when the caller keeps it (see :class:`Window`).
        """
        tick, following = window if window is not None else self.window(now)
        if tick is None:
            return None
        fresh = (now - tick).total_seconds() <= self.grace(tick, following)
        if not fresh and self.missed == "skip":
            return None
        return tick, fresh

    def next_fire(self, now: dt.datetime, last_tick: dt.datetime | None) -> dt.datetime | None:
        """The next tick a round would enqueue: a due one not yet consumed, else the next one."""
        window = self.window(now)
        due = self.due(now, window)
        if due is not None:
            tick, fresh = due
            if (last_tick is None or last_tick < tick) and (fresh or last_tick is not None):
                return tick
        return window.following


def declare(
    name: str,
    schedule: str | None,
    *,
    job: str,
    every: float | dt.timedelta | None,
    params: object,
    queue: str | None,
    priority: int,
    timezone: str | ZoneInfo | None,
    missed: str,
    overlap: bool,
    grace: float | dt.timedelta | None,
) -> PeriodicSpec:
    """Check every option of a declaration; ConfigError naming the first bad one."""
    check_name("periodic name", name)
    check_name("job (the job type's name)", job)
    if queue is not None:
        check_name("queue", queue)
    check_priority(priority)
    if (schedule is None) == (every is None):
        raise ConfigError(
            f"periodic {name!r}: give exactly one of a cron schedule ('*/5 * * * *') or every=timedelta(...)"
        )
    ticks: CronTicks | EveryTicks
    if every is not None:
        if timezone is not None:
            raise ConfigError(
                f"periodic {name!r}: timezone applies to cron schedules (every= ticks follow the epoch)"
            )
        ticks = EveryTicks(every)
    else:
        ticks = CronTicks(schedule or "", check_timezone(timezone), name)
        if ticks.following(dt.datetime.now(dt.UTC)) is None:
            raise ConfigError(f"periodic {name!r}: schedule {ticks.text!r} never fires again")
    if missed not in MISSED_POLICIES:
        raise ConfigError(f"periodic {name!r}: missed must be 'skip' or 'latest', got {missed!r}")
    if not isinstance(overlap, bool):
        raise ConfigError(f"periodic {name!r}: overlap must be True or False, got {overlap!r}")
    grace_s = None
    if grace is not None:
        grace_s = check_delay(grace, "grace")
        if not (grace_s > 0 and math.isfinite(grace_s)):
            raise ConfigError(f"periodic {name!r}: grace must be a positive duration, got {grace!r}")
    return PeriodicSpec(
        name=name,
        ticks=ticks,
        type=job,
        params=params,
        queue=queue,
        priority=priority,
        missed="latest" if missed == "latest" else "skip",
        overlap=overlap,
        grace_s=grace_s,
    )
