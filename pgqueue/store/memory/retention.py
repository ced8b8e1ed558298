"""Retention of the memory store's run log, by the PostgreSQL store's rule.

There are no partitions here, but each run belongs to the one it would be in on
PostgreSQL (sql/012): its tree (``failed`` for the final run of a failed job, ``done`` for
any other) and the UTC day it finished. A round removes the runs of every such day that
is wholly before its tree's cutoff, under the same names, and with them the failed runs a
removed later run of their job supersedes. So a round reports the same partitions on
both backends. Nothing is ever missing a partition, and nothing waits in a DEFAULT one.
"""

from __future__ import annotations

import datetime as dt
import re

from pgqueue.store.retention_plan import RetentionPlan, partition_name

from .base import MemoryBase
from .rows import LoggedRun, end_state, to_datetime

__all__ = ["RetentionMixin"]

_NAME = re.compile(r"^job_runs_(done|failed)_p([0-9]{8})$")
_DAY = dt.timedelta(days=1)


def _kind(run: LoggedRun) -> str:
    return "failed" if end_state(run) == "failed" else "done"


def _day(run: LoggedRun) -> dt.date:
    return to_datetime(run.finished_at).date()


def _midnight(moment: dt.datetime) -> dt.datetime:
    """The start of the UTC day ``moment`` falls in."""
    return dt.datetime.combine(moment.astimezone(dt.UTC).date(), dt.time(), dt.UTC)


class RetentionMixin(MemoryBase):
    """The retention steps of :class:`~pgqueue.store.RetentionStore` on the memory log."""

    async def runs_retention_plan(
        self,
        now: dt.datetime | None,
        keep_s: float,
        keep_failed_s: float,
        days_ahead: int,  # noqa: ARG002 - no partitions to create ahead
    ) -> RetentionPlan:
        """The cutoffs (midnights UTC) and the days whose runs are past them."""
        moment = now if now is not None else to_datetime(self.clock.time())
        done_before = _midnight(moment - dt.timedelta(seconds=keep_s))
        failed_before = _midnight(moment - dt.timedelta(seconds=keep_failed_s))
        return RetentionPlan(
            done_before=done_before,
            failed_before=failed_before,
            missing=(),
            missing_partitions=0,
            expired=tuple(await self.runs_partitions_expired(done_before, failed_before)),
            default_rows=0,
        )

    async def runs_partitions_expired(
        self, done_before: dt.datetime, failed_before: dt.datetime
    ) -> list[str]:
        """The days (as partition names) with runs, wholly before their tree's cutoff; oldest first."""
        cutoff = {"done": done_before, "failed": failed_before}
        days = {(_day(r), _kind(r)) for runs in self.runs.values() for r in runs}
        return [
            partition_name(kind, day)
            for day, kind in sorted(days)
            if dt.datetime.combine(day + _DAY, dt.time(), dt.UTC) <= cutoff[kind]
        ]

    async def runs_partition_ensure(self, day: dt.date, lock_timeout: float) -> int | None:  # noqa: ARG002 - the role's signature
        """Nothing to create."""
        return 0

    async def runs_partition_drop(self, partition: str, lock_timeout: float) -> int | None:  # noqa: ARG002 - no locks here
        """Remove one day's runs of one tree; the superseded failed runs removed beside them."""
        m = _NAME.match(partition)
        if m is None:
            raise ValueError(f"not a day partition of job_runs: {partition}")
        kind, day = m.group(1), dt.datetime.strptime(m.group(2), "%Y%m%d").replace(tzinfo=dt.UTC).date()
        superseded = 0
        for job_id in list(self.runs):
            runs = self.runs[job_id]
            gone = [r for r in runs if _kind(r) == kind and _day(r) == day]
            if not gone:
                continue
            last = max(r.attempt for r in gone)
            if kind == "done":
                before = len(runs)
                runs = [r for r in runs if not (_kind(r) == "failed" and r.attempt < last)]
                superseded += before - len(runs)
            runs = [r for r in runs if r not in gone]
            if runs:
                self.runs[job_id] = runs
            else:
                del self.runs[job_id]
        return superseded

    async def runs_defaults_expire(self, done_before: dt.datetime, failed_before: dt.datetime) -> int:  # noqa: ARG002 - no DEFAULT partitions
        """Nothing waits in a DEFAULT partition here."""
        return 0
