"""Retention of the run log: one round creates the coming days' partitions and drops the expired ones.

``job_runs`` is partitioned by the UTC day a run finished, in two trees: the final runs of
failed jobs, kept for ``keep_failed``, and every other run, kept for ``keep`` (sql/012).
A round, :meth:`Retention.run_once`, does in order:

1. create the partitions of today and the next ``days_ahead`` days, and of the days of
   rows waiting in a DEFAULT partition that are not expired yet (they move in);
2. delete the rows of expired days still waiting in a DEFAULT partition (the one step that
   leaves dead tuples: it happens only when partitions were missing);
3. drop every day partition whose whole day is before its tree's cutoff (midnight UTC at
   or before now minus the retention). A dropped table leaves no dead tuples.

Each DDL step is a short transaction of its own, under a lock timeout: a step that cannot
get its locks in time (a long read of the log holds them) is skipped and reported in
:attr:`PruneResult.busy`, and the next round does it. The round is one-shot, with no
loop: the maintenance leader calls it periodically, ``Scheduler.prune()`` and ``pgqueue
prune`` on demand. Rounds are idempotent: a second one right after finds nothing to do.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

from pgqueue._config import (
    RETENTION_FAILED_S,
    RETENTION_S,
    RUNS_DAYS_AHEAD,
    RUNS_DDL_LOCK_TIMEOUT_S,
    check_retention,
)
from pgqueue._errors import ConfigError
from pgqueue._log import RUNS_PRUNED, get_logger
from pgqueue.store import RetentionStore

__all__ = ["MAX_DAYS_AHEAD", "PruneResult", "Retention"]

MAX_DAYS_AHEAD = 366  # partitions created ahead at most: a year of empty tables is plenty
_log = get_logger()

ProgressCallback = Callable[[int, int], object]
"""``on_progress(steps done, steps in all)``: after each partition created or dropped."""


@dataclasses.dataclass(frozen=True, slots=True)
class PruneResult:
    """What one retention round did (or, with ``dry_run``, would do)."""

    done_before: dt.datetime
    """Runs that finished before this are gone: midnight UTC at or before now minus the
    retention (the database's clock)."""
    failed_before: dt.datetime
    """The same for the final runs of failed jobs, with their own retention."""
    partitions_created: int
    """Day partitions created (the coming days, and days whose rows waited in a DEFAULT
    partition)."""
    partitions_dropped: tuple[str, ...]
    """The day partitions dropped, oldest first (named ``job_runs_<done|failed>_pYYYYMMDD``)."""
    rows_deleted: int
    """Rows deleted rather than dropped with a partition: rows of expired days that waited
    in a DEFAULT partition, and failed runs superseded by a later run of their job that was
    dropped (a failed job retried by hand). The only dead tuples retention leaves."""
    busy: tuple[str, ...] = ()
    """Partitions to drop (or days to create, as YYYY-MM-DD) skipped because their locks did
    not come within the lock timeout; the next round does them."""
    dry_run: bool = False
    """True when nothing was changed: the fields say what a round would do (the days it
    would create, the partitions it would drop, the DEFAULT rows it would delete)."""


class Retention:
    """One schema's retention rounds: ``keep`` and ``keep_failed`` in seconds or timedeltas."""

    def __init__(
        self,
        store: RetentionStore,
        keep: float | dt.timedelta = RETENTION_S,
        keep_failed: float | dt.timedelta = RETENTION_FAILED_S,
        days_ahead: int = RUNS_DAYS_AHEAD,
        *,
        lock_timeout: float = RUNS_DDL_LOCK_TIMEOUT_S,
        names: tuple[str, str] = ("retention", "retention_failed"),
    ) -> None:
        self._keep, self._keep_failed = check_retention(keep, keep_failed, names)
        if (
            isinstance(days_ahead, bool)
            or not isinstance(days_ahead, int)
            or not 0 <= days_ahead <= MAX_DAYS_AHEAD
        ):
            raise ConfigError(f"days_ahead must be an integer from 0 to {MAX_DAYS_AHEAD}, got {days_ahead!r}")
        if (
            isinstance(lock_timeout, bool)
            or not isinstance(lock_timeout, int | float)
            or not lock_timeout > 0
        ):
            raise ConfigError(f"lock_timeout must be a positive number of seconds, got {lock_timeout!r}")
        self._store = store
        self._days_ahead = days_ahead
        self._lock_timeout = float(lock_timeout)

    async def run_once(
        self,
        now: dt.datetime | None = None,
        *,
        dry_run: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> PruneResult:
        """One round (see the module); ``now`` (aware) replaces the database's clock, for tests.

        Errors other than a lock timeout propagate: what was done before them stays done,
        and the next round goes on from there.
        """
        if now is not None and (now.tzinfo is None or now.utcoffset() is None):
            raise ConfigError(f"now must be timezone-aware, got {now!r}")
        plan = await self._store.runs_retention_plan(now, self._keep, self._keep_failed, self._days_ahead)
        if dry_run:
            return PruneResult(
                done_before=plan.done_before,
                failed_before=plan.failed_before,
                partitions_created=plan.missing_partitions,
                partitions_dropped=plan.expired,
                rows_deleted=plan.default_rows,
                dry_run=True,
            )
        progress = _Progress(len(plan.missing) + len(plan.expired), on_progress)
        round_ = _Round(self._store, self._lock_timeout, progress)
        await round_.create(plan.missing)
        expired = plan.expired
        if round_.created:  # a day created for DEFAULT rows may be expired in one tree already
            expired = tuple(await self._store.runs_partitions_expired(plan.done_before, plan.failed_before))
            progress.total += len(expired) - len(plan.expired)
        if plan.default_rows:
            round_.deleted += await self._store.runs_defaults_expire(plan.done_before, plan.failed_before)
        await round_.drop(expired)
        result = PruneResult(
            done_before=plan.done_before,
            failed_before=plan.failed_before,
            partitions_created=round_.created,
            partitions_dropped=tuple(round_.dropped),
            rows_deleted=round_.deleted,
            busy=tuple(round_.busy),
        )
        if result.partitions_created or result.partitions_dropped or result.rows_deleted or result.busy:
            _log.info(
                RUNS_PRUNED,
                partitions_created=result.partitions_created,
                partitions_dropped=len(result.partitions_dropped),
                rows_deleted=result.rows_deleted,
                busy=len(result.busy),
            )
        return result


class _Progress:
    """Counts a round's steps for ``on_progress``; the total grows if the round finds more."""

    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.total = total
        self.done = 0
        self._callback = callback
        if callback is not None:
            callback(0, total)

    def step(self) -> None:
        self.done += 1
        if self._callback is not None:
            self._callback(self.done, self.total)


class _Round:
    """What one round did so far: the DDL steps, each in its own transaction."""

    def __init__(self, store: RetentionStore, lock_timeout: float, progress: _Progress) -> None:
        self._store = store
        self._lock_timeout = lock_timeout
        self._progress = progress
        self.created = 0
        self.deleted = 0
        self.dropped: list[str] = []
        self.busy: list[str] = []

    async def create(self, days: tuple[dt.date, ...]) -> None:
        for day in days:
            created = await self._store.runs_partition_ensure(day, self._lock_timeout)
            if created is None:
                self.busy.append(day.isoformat())
            else:
                self.created += created
            self._progress.step()

    async def drop(self, partitions: tuple[str, ...]) -> None:
        for partition in partitions:
            superseded = await self._store.runs_partition_drop(partition, self._lock_timeout)
            if superseded is None:
                self.busy.append(partition)
            else:
                self.dropped.append(partition)
                self.deleted += superseded
            self._progress.step()
