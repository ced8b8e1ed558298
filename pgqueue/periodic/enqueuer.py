"""One round of periodic enqueuing: offer every declaration's due tick to the database.

The maintenance leader calls :meth:`PeriodicEnqueuer.run_once` and sleeps for what it
returns (the time to the next tick of any declaration); ``scheduler.enqueue_due_periodic()``
runs one round on demand. Any number of processes may run rounds at once: the store's
compare-and-set on each declaration's last tick (``periodic_fire_many``) enqueues each
tick once, so a round needs no lock and a second leader, for a while, costs nothing but
a statement.

The round's clock is the process's: it picks the tick (the latest at or before ``now``)
and judges whether it is still within its grace. The job's due time is the tick itself,
read by the database's clock, so a host whose clock runs ahead enqueues early and the job
still runs at the tick. What clock skew can and cannot do is in the README's "Periodic
jobs" section.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Sequence

from pgqueue._enqueue import prepare
from pgqueue._errors import ConfigError, ParamsEncodeError, UnknownJobTypeError
from pgqueue._log import PERIODIC_ENQUEUED, PERIODIC_SKIPPED, get_logger
from pgqueue._params import ParamsValidationError
from pgqueue._registry import Registry
from pgqueue.store import NewJobs, PeriodicStore
from pgqueue.store.periodic_rows import OVERLAP_NOTE, PeriodicDeclaration, PeriodicFire, PeriodicFired

from .spec import PeriodicSpec, Window

__all__ = ["PeriodicEnqueuer", "Round", "aware_now", "resolve"]

MISSING = "missing"  # the note of a fire whose declaration has no row (removed meanwhile)

_log = get_logger()


def aware_now(now: dt.datetime | None) -> dt.datetime:
    """``now`` (timezone-aware, checked) or the wall clock, in UTC."""
    if now is None:
        return dt.datetime.now(dt.UTC)
    if not isinstance(now, dt.datetime) or now.utcoffset() is None:
        raise ConfigError(f"now must be a timezone-aware datetime, got {now!r}")
    return now.astimezone(dt.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class Round:
    """What one round did."""

    enqueued: int
    """Jobs enqueued."""
    skipped: int
    """Ticks consumed without a job (overlap=False and the previous job still live)."""
    next_in: float
    """Seconds from the round's ``now`` to the next tick of any declaration (inf: none)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Ready:
    """A declaration resolved against the registry: its job's insert and params, encoded once."""

    spec: PeriodicSpec
    jobs: NewJobs
    params: str


def resolve(spec: PeriodicSpec, registry: Registry) -> _Ready:
    """The declaration's job as schedule() would check it; errors name the declaration."""
    try:
        target = prepare(registry, spec.type, spec.queue, None, spec.priority, None)
    except UnknownJobTypeError:
        known = ", ".join(sorted(jt.name for jt in registry.describe())) or "none"
        raise ConfigError(
            f"periodic {spec.name!r}: job={spec.type!r} is not a registered job type (registered: {known})"
        ) from None
    try:
        params = target.encode(spec.params)
    except (ParamsValidationError, ParamsEncodeError) as exc:
        raise type(exc)(f"periodic {spec.name!r}: {exc}") from (exc.__cause__ or exc)
    return _Ready(spec, target.jobs, params)


class PeriodicEnqueuer:
    """Enqueues the due ticks of the registry's periodic declarations, one round at a time.

    Built from the declarations registered when it is made: each one's job type must be
    registered by then and its params must pass the type's model, or the constructor raises
    (:class:`ConfigError` naming the declaration, or the params error), before anything is
    written. The first round writes the declarations' rows (``periodic_declare_many``).
    """

    def __init__(self, store: PeriodicStore, registry: Registry) -> None:
        self._store = store
        self._ready = [resolve(spec, registry) for spec in registry.periodic.values()]
        self._declared = False
        self._windows: dict[str, Window] = {}  # each declaration's ticks around the last round's now

    @property
    def specs(self) -> tuple[PeriodicSpec, ...]:
        """The declarations it enqueues."""
        return tuple(r.spec for r in self._ready)

    async def run_once(self, now: dt.datetime | None = None) -> float:
        """Enqueue every due tick; seconds until the next tick of any declaration (inf: none).

        ``now``: the round's clock (aware; None reads the wall clock). Database errors
        propagate; nothing of the round was written then, and the next round offers the
        same ticks again while they are within their grace.
        """
        return (await self.round(now)).next_in

    async def round(self, now: dt.datetime | None = None) -> Round:
        """One round, with what it did (see :meth:`run_once`)."""
        at = aware_now(now)
        if not self._declared:
            await self._declare(self._ready)
        fires = [f for r in self._ready if (f := self._fire(r, at, self._window(r.spec, at))) is not None]
        fires.sort(key=lambda f: f.name)  # rows locked in one order in every process: no deadlock
        done = await self._store.periodic_fire_many(fires) if fires else []
        missing = {d.name for d in done if d.note == MISSING}
        if missing:  # removed by remove_periodic() while declared here: declare again, offer again
            again = [r for r in self._ready if r.spec.name in missing]
            await self._declare(again)
            done = [d for d in done if d.note != MISSING]
            done += await self._store.periodic_fire_many([f for f in fires if f.name in missing])
        return Round(
            enqueued=self._report(done),
            skipped=sum(d.note == OVERLAP_NOTE for d in done),
            next_in=self._next_in(at),
        )

    async def _declare(self, ready: Sequence[_Ready]) -> None:
        rows = [PeriodicDeclaration(r.spec.name, r.spec.schedule, r.jobs.type, r.jobs.queue) for r in ready]
        await self._store.periodic_declare_many(rows)
        self._declared = True

    def _window(self, spec: PeriodicSpec, now: dt.datetime) -> Window:
        """The declaration's window around ``now``: kept, moved on by one tick, or computed."""
        window = self._windows.get(spec.name)
        if window is not None and window.holds(now):
            return window
        if window is not None and window.following is not None and window.following <= now:
            window = Window(window.following, spec.ticks.following(window.following))  # the usual step
        if window is None or not window.holds(now):
            window = spec.window(now)
        self._windows[spec.name] = window
        return window

    @staticmethod
    def _fire(ready: _Ready, now: dt.datetime, window: Window) -> PeriodicFire | None:
        due = ready.spec.due(now, window)
        if due is None:
            return None
        tick, fresh = due
        return PeriodicFire(
            name=ready.spec.name,
            tick=tick,
            fresh=fresh,
            catch_up=ready.spec.missed == "latest",
            overlap=ready.spec.overlap,
            jobs=ready.jobs._replace(run_at=tick),
            params=ready.params,
        )

    @staticmethod
    def _report(done: Sequence[PeriodicFired]) -> int:
        enqueued = 0
        for d in done:
            if d.job_id is not None:
                enqueued += 1
                _log.info(PERIODIC_ENQUEUED, periodic=d.name, tick=d.tick.isoformat(), job_id=d.job_id)
            else:
                _log.info(PERIODIC_SKIPPED, periodic=d.name, tick=d.tick.isoformat(), reason=d.note)
        return enqueued

    def _next_in(self, now: dt.datetime) -> float:
        following = [t for r in self._ready if (t := self._window(r.spec, now).following) is not None]
        if not following:
            return math.inf
        return max(0.0, (min(following) - now).total_seconds())
