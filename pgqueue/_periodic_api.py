"""The periodic-job methods of :class:`~pgqueue.Scheduler`: declare, list, remove, enqueue.

A mixin of its own, as scheduling and management are. Declarations live in the registry
(``registry.periodic``), where a worker's maintenance leader finds them; what they mean
is in ``periodic/spec.py``, when they fire in ``periodic/ticks.py``, and how a tick
becomes exactly one job in ``periodic/enqueuer.py`` and ``queries/periodic.sql``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import TypeVar
from zoneinfo import ZoneInfo

from ._boundary import translated
from ._codec import encode
from ._config import MAX_ATTEMPTS, check_name
from ._errors import ConfigError
from ._models import JobHandler
from ._registry import DEFAULT_QUEUE, Registry
from ._retry import ErrorFilter
from .periodic.enqueuer import PeriodicEnqueuer, aware_now, resolve
from .periodic.records import PeriodicInfo
from .periodic.spec import PeriodicSpec, declare
from .periodic.ticks import CronTicks, EveryTicks, ticks_from_text
from .store import Store
from .store.periodic_rows import PeriodicRow

__all__ = ["PeriodicScheduling"]

H = TypeVar("H", bound=JobHandler)


class PeriodicScheduling:
    """Periodic declarations: ``@scheduler.periodic``, ``add_periodic`` and their listing."""

    schema: str
    registry: Registry
    _store: Store | None
    open: Callable[[], Awaitable[Store]]
    register: Callable[..., None]
    # The enqueuer enqueue_due_periodic() reuses while neither the store nor the declarations change.
    _periodic_enqueuer: tuple[Store, tuple[PeriodicSpec, ...], PeriodicEnqueuer] | None = None

    def periodic(
        self,
        schedule: str | None = None,
        name: str | None = None,
        *,
        every: float | dt.timedelta | None = None,
        params: object = None,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        timezone: str | ZoneInfo | None = None,
        missed: str = "skip",
        overlap: bool = True,
        grace: float | dt.timedelta | None = None,
        retry: ErrorFilter | None = None,
        timeout: float | None = None,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> Callable[[H], H]:
        """Decorator: register ``fn`` as job type ``name`` and enqueue it on a schedule.

        ::

            @scheduler.periodic("*/5 * * * *", timezone="Europe/Paris")
            async def sync_prices(job: Job) -> None: ...

            @scheduler.periodic(every=dt.timedelta(minutes=10), missed="latest", overlap=False)
            async def rebuild_index(job: Job) -> None: ...

        ``schedule``: a cron expression (5 fields, or 6 with seconds last; ``@hourly``…) read
        in ``timezone`` (an IANA name, default UTC); or ``every``: an interval of at least a
        second, whose ticks are its multiples since 1970-01-01T00:00Z. ``name``: the
        declaration's and the job type's name (default: the function's name). ``params``,
        ``queue``, ``priority``: of every job it enqueues. ``missed``, ``overlap``, ``grace``:
        see :meth:`add_periodic`. ``retry``, ``timeout``, ``max_attempts``: the job type's,
        as in :meth:`~pgqueue.Scheduler.job`. Every option is checked before anything is
        registered: :class:`ConfigError` names the bad one.
        """

        def register(fn: H) -> H:
            type_name = name if name is not None else getattr(fn, "__name__", None)
            if not isinstance(type_name, str):
                raise ConfigError(f"periodic: name= is needed for {fn!r}, which has no __name__")
            spec = declare(
                type_name, schedule, job=type_name, every=every, params=params, queue=None,
                priority=priority, timezone=timezone, missed=missed, overlap=overlap, grace=grace,
            )  # fmt: skip
            if spec.name in self.registry.periodic:
                raise ConfigError(f"periodic {spec.name!r} is already declared")
            encode(params)  # the type has no params model: encodable is all there is to check
            self.register(type_name, fn, queue=queue, retry=retry, timeout=timeout, max_attempts=max_attempts)
            self.registry.add_periodic(spec)
            return fn

        return register

    def add_periodic(
        self,
        name: str,
        schedule: str | None = None,
        *,
        job: str,
        every: float | dt.timedelta | None = None,
        params: object = None,
        queue: str | None = None,
        priority: int = 0,
        timezone: str | ZoneInfo | None = None,
        missed: str = "skip",
        overlap: bool = True,
        grace: float | dt.timedelta | None = None,
    ) -> None:
        """Declare that job type ``job`` is enqueued on a schedule (the decorator's form for a type of yours).

        ``schedule``/``every``/``timezone`` as for :meth:`periodic`. ``queue``: default the
        type's. Policies (each tick is judged by the clock of the process whose round
        offers it):

        - ``missed="skip"`` (default): a tick is enqueued only while it is at most ``grace``
          old; ticks missed while no process ran rounds are dropped. ``missed="latest"``:
          after such a gap the latest missed tick is enqueued once; a declaration that
          never fired has missed nothing.
        - ``grace``: seconds or a timedelta; default half the gap to the next tick, at most
          60 s.
        - ``overlap=False``: a tick whose previous job of this declaration is still live
          (pending, scheduled, running, suspended…) is consumed without a job, noted
          ``skipped (overlap)``.

        ``job`` may be registered later, but must be by the time a round enqueues (else
        :class:`ConfigError`); when it is already registered, ``params`` are validated now,
        as :meth:`~pgqueue.Scheduler.schedule` validates them.
        """
        spec = declare(
            name, schedule, job=job, every=every, params=params, queue=queue, priority=priority,
            timezone=timezone, missed=missed, overlap=overlap, grace=grace,
        )  # fmt: skip
        if spec.name in self.registry.periodic:
            raise ConfigError(f"periodic {spec.name!r} is already declared")
        if spec.type in self.registry:
            resolve(spec, self.registry)
        self.registry.add_periodic(spec)

    async def remove_periodic(self, name: str) -> bool:
        """Forget a declaration: here, and its row (with its last tick) in the database.

        For a declaration removed from the code, whose row listings still show. A process
        that still declares it writes the row again at its next round that enqueues, and
        its next tick fires as the first one of a new declaration. True when there was
        something to forget.
        """
        check_name("periodic name", name)
        declared = self.registry.periodic.pop(name, None) is not None
        async with translated("remove_periodic", self.schema):
            deleted = await (await self.open()).periodic_delete(name)
        return declared or deleted

    async def enqueue_due_periodic(self, now: dt.datetime | None = None) -> int:
        """Run one round of periodic enqueuing now; the number of jobs it enqueued.

        The maintenance leader of the workers runs rounds on its own; this is for a process
        without workers, a script, or a test that injects ``now`` (aware; default the wall
        clock). Rounds of any number of processes at once enqueue each tick once.
        """
        store = await self.open()
        specs = tuple(self.registry.periodic.values())
        cached = self._periodic_enqueuer
        if cached is None or cached[0] is not store or cached[1] != specs:
            cached = self._periodic_enqueuer = (store, specs, PeriodicEnqueuer(store, self.registry))
        async with translated("enqueue_due_periodic", self.schema):
            done = await cached[2].round(now)
        return done.enqueued

    async def list_periodic(self, now: dt.datetime | None = None) -> list[PeriodicInfo]:
        """Every declaration, this scheduler's and the database's rows, by name.

        Each with its next fire time (from ``now``, default the wall clock), last tick, last
        job and that job's outcome; rows that no declaration here matches have
        ``declared=False`` and the next tick of their stored schedule.
        """
        at = aware_now(now)
        async with translated("list_periodic", self.schema):
            rows = {r.name: r for r in await (await self.open()).periodic_list()}
        out = [self._info(spec, rows.pop(spec.name, None), at) for spec in self.registry.periodic.values()]
        out += [_undeclared(row, at) for row in rows.values()]
        return sorted(out, key=lambda i: i.name)

    def _info(self, spec: PeriodicSpec, row: PeriodicRow | None, now: dt.datetime) -> PeriodicInfo:
        jt = self.registry.get(spec.type)
        queue = spec.queue or (
            jt.queue if jt is not None else row.queue if row is not None else DEFAULT_QUEUE
        )
        last_tick = None if row is None else row.last_tick
        return PeriodicInfo(
            name=spec.name,
            schedule=spec.schedule,
            type=spec.type,
            queue=queue,
            next_fire_at=spec.next_fire(now, last_tick),
            last_tick=last_tick,
            last_job_id=None if row is None else row.last_job_id,
            last_outcome=None if row is None else _outcome(row),
        )


def _outcome(row: PeriodicRow) -> str | None:
    if row.last_note is not None:
        return row.last_note
    return None if row.last_state in (None, "gone") else row.last_state


def _undeclared(row: PeriodicRow, now: dt.datetime) -> PeriodicInfo:
    ticks: CronTicks | EveryTicks | None
    try:
        ticks = ticks_from_text(row.schedule, row.name)
    except ConfigError:  # written by another version of pgqueue: listed without a next time
        ticks = None
    return PeriodicInfo(
        name=row.name,
        schedule=row.schedule,
        type=row.type,
        queue=row.queue,
        next_fire_at=None if ticks is None else ticks.following(now),
        last_tick=row.last_tick,
        last_job_id=row.last_job_id,
        last_outcome=_outcome(row),
        declared=False,
    )
