"""What one retention round of the run log finds to do, as a store reads it."""

from __future__ import annotations

import dataclasses
import datetime as dt

__all__ = ["RetentionPlan", "partition_name"]


def partition_name(kind: str, day: dt.date) -> str:
    """A day partition's name, as ``runs_partition_ensure()`` (sql/012) gives it."""
    return f"job_runs_{kind}_p{day:%Y%m%d}"


@dataclasses.dataclass(frozen=True, slots=True)
class RetentionPlan:
    """One round's plan; the cutoffs are on the database's clock (or the ``now`` given)."""

    done_before: dt.datetime
    """Runs that finished before this go (midnight UTC at or before now minus the retention)."""
    failed_before: dt.datetime
    """The same for the final runs of failed jobs, with their own retention."""
    missing: tuple[dt.date, ...]
    """Days to create partitions for: today and the days ahead, and the days of rows waiting
    in a DEFAULT partition that are not expired yet; oldest first."""
    missing_partitions: int
    """How many partitions those days lack (each day has one in either tree)."""
    expired: tuple[str, ...]
    """Day partitions whose whole day is before their cutoff, oldest first."""
    default_rows: int
    """Rows of expired days waiting in a DEFAULT partition: they can only be deleted."""
