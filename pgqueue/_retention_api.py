"""The run log's retention on demand: :meth:`~pgqueue.Scheduler.prune` (``pgqueue prune``).

The maintenance leader runs the same round periodically with the workers' ``retention``
and ``retention_failed``; this mixin is the call for an operator (or a test) who wants it
now, or with other durations. What a round does is in ``maintenance/retention.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

from ._boundary import translated
from ._config import RETENTION_FAILED_S, RETENTION_S, check_retention
from .maintenance.retention import ProgressCallback, PruneResult, Retention
from .store import Store

__all__ = ["PruneResult", "RunRetention", "prune_durations"]

_NAMES = ("older_than", "failed_older_than")


def prune_durations(
    older_than: float | dt.timedelta | None,
    failed_older_than: float | dt.timedelta | None,
    names: tuple[str, str] = _NAMES,
) -> tuple[float, float]:
    """:meth:`RunRetention.prune`'s durations in seconds, defaults filled in, checked.

    ``older_than`` defaults to 14 days; ``failed_older_than`` to 30 days, or ``older_than``
    when that is longer. A bad value raises :class:`ConfigError` naming it as ``names`` say.
    """
    keep = RETENTION_S if older_than is None else older_than
    if failed_older_than is None:
        keep_s = check_retention(keep, keep, (names[0], names[0]))[0]
        return keep_s, max(keep_s, RETENTION_FAILED_S)
    return check_retention(keep, failed_older_than, names)


class RunRetention:
    """Drop the run log's expired days now."""

    schema: str
    open: Callable[[], Awaitable[Store]]

    async def prune(
        self,
        older_than: float | dt.timedelta | None = None,
        failed_older_than: float | dt.timedelta | None = None,
        *,
        dry_run: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> PruneResult:
        """Drop the runs older than ``older_than`` (default 14 days), whole UTC days at a time.

        The final runs of failed jobs are kept for ``failed_older_than`` (default: 30 days,
        or ``older_than`` if longer; never less than ``older_than``). Durations are seconds
        or timedeltas. The coming days' partitions are created on the way. ``dry_run``
        changes nothing and says what would be done. ``on_progress(done, total)`` is called
        after each partition created or dropped. Bad durations raise :class:`ConfigError`
        before anything is read or written.

        Pruning drops whole partitions: it leaves no dead tuples, except for the rows it has
        to delete (see :attr:`PruneResult.rows_deleted`).
        """
        keep_s, keep_failed_s = prune_durations(older_than, failed_older_than)
        async with translated("prune", self.schema):
            retention = Retention(await self.open(), keep_s, keep_failed_s, names=_NAMES)
            return await retention.run_once(dry_run=dry_run, on_progress=on_progress)
