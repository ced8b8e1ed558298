"""What the flusher hands the store: one flush's runs as parallel arrays, and what it changed.

Backend-neutral data: the PostgreSQL store passes the arrays to one ``unnest`` statement;
another backend reads them as rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import field
from typing import Any, NamedTuple

__all__ = ["FinalizeResult", "FlushBatch", "NewJobs", "ProgressReport"]


@dataclasses.dataclass(slots=True)
class FlushBatch:
    """One flush as the parallel arrays of ``job_finalize_many``: one unnest per family.

    Ended runs always fill ids, attempts and times. Their outcomes, errors, results, log
    flags and lines may stop short (the statement pads them with NULL: a logged success without a
    result), so a batch of plain successes sends four arrays; :meth:`end_detail` fills in
    a run that is more than that. Put-back runs are rare and fill every array.
    Times are epoch seconds (float8 is cheap to encode; asyncpg's timestamptz is not).
    """

    end_ids: list[int] = field(default_factory=list)
    end_attempts: list[int] = field(default_factory=list)
    end_started: list[float] = field(default_factory=list)
    end_finished: list[float] = field(default_factory=list)
    end_outcomes: list[str | None] = field(default_factory=list)
    end_errors: list[str | None] = field(default_factory=list)
    end_results: list[str | None] = field(default_factory=list)
    end_log: list[bool | None] = field(default_factory=list)
    back_ids: list[int] = field(default_factory=list)
    back_attempts: list[int] = field(default_factory=list)
    back_started: list[float] = field(default_factory=list)
    back_finished: list[float] = field(default_factory=list)
    back_outcomes: list[str] = field(default_factory=list)
    back_errors: list[str | None] = field(default_factory=list)
    back_due_at: list[float] = field(default_factory=list)
    """When each put-back run was due (the job's run_at before the update), epoch seconds."""
    back_retry_at: list[dt.datetime | None] = field(default_factory=list)
    back_delay: list[float] = field(default_factory=list)
    back_error_inc: list[int] = field(default_factory=list)
    back_log: list[bool] = field(default_factory=list)
    back_checkpoint: list[str | None] = field(default_factory=list)
    """The checkpoint each put-back run saved (JSON text); None keeps the job's."""
    end_lines: list[str | None] = field(default_factory=list)
    """The lines each ended run wrote through ``job.log`` (a JSON array); None: none.

    Like the optional arrays above, it stops after the last run that wrote lines (the
    statement pads it with NULL), so a flush where no handler logged sends it empty. The
    two line arrays are passed after the statement's other parameters (``$24``, ``$25``).
    """
    back_lines: list[str | None] = field(default_factory=list)
    """The lines of each put-back run, padded the same way."""

    def end_detail(
        self,
        index: int,
        outcome: str | None,
        error: str | None,
        result: str | None,
        log: bool,  # noqa: FBT001
    ) -> None:
        """Record what ended run ``index`` has beyond a logged success (None: succeeded)."""
        grow = index + 1 - len(self.end_outcomes)
        if grow > 0:
            pad: list[Any] = [None] * grow
            self.end_outcomes += pad
            self.end_errors += pad
            self.end_results += pad
            self.end_log += pad
        self.end_outcomes[index] = outcome
        self.end_errors[index] = error
        self.end_results[index] = result
        self.end_log[index] = log

    def without_runs(self) -> None:
        """Finalize the jobs but log none of their runs (a run row the database refuses)."""
        self.end_log = [False] * len(self.end_ids)
        self.back_log = [False] * len(self.back_ids)
        self.end_lines, self.back_lines = [], []

    def add_lines(self, lines: list[str | None], index: int, text: str) -> None:
        """Set ``lines[index]`` (``end_lines`` or ``back_lines``), padding the gap with None."""
        lines += [None] * (index - len(lines))
        lines.append(text)

    def arguments(self) -> tuple[list[Any], ...]:
        """The arrays in field order, which is the order of job_finalize_many's $2 .. $21.

        Not the line arrays, which are ``$24`` and ``$25`` (:attr:`end_lines`).
        """
        return tuple(getattr(self, name) for name in _BATCH_FIELDS)


_BATCH_FIELDS = tuple(
    f.name for f in dataclasses.fields(FlushBatch) if f.name not in {"end_lines", "back_lines"}
)


@dataclasses.dataclass(frozen=True, slots=True)
class FinalizeResult:
    """What a flush changed: only runs of jobs this worker still owned were recorded."""

    ended: frozenset[int]
    put_back: dict[int, dt.datetime]
    runs_logged: int
    put_back_due_in: float | None = None
    """Seconds (server clock) until the earliest put-back job is due."""


@dataclasses.dataclass(frozen=True, slots=True)
class ProgressReport:
    """The latest progress a running job reported (the worker coalesces them)."""

    job_id: int
    attempt: int
    fraction: float
    """From 0 to 1."""
    message: str | None


class NewJobs(NamedTuple):
    """Where and when new jobs go, as schedule() checked them: the store's inserts take it."""

    queue: str
    type: str
    run_at: dt.datetime | None = None
    """An absolute due time; None: the database's now() plus ``delay_s``."""
    priority: int = 0
    timeout_s: float | None = None
    delay_s: float | None = None
    trace: str | None = None
    """The W3C traceparent of the scheduling span (pgqueue.otel); None: not traced."""
    tenant: str | None = None
    """The job's tenant (single inserts; ``job_insert_many`` takes one per job); None: none."""
