"""The records users see: :class:`Job` (one claimed run of a job) and run outcomes.

Names, and what each one is:

- :class:`Job` is the hot path's record: one claimed run of a job, as its handler sees it.
  It wraps the row the claim returned instead of copying it into a dataclass (building a
  frozen dataclass costs a few microseconds per job, a visible share of the drain rate).
  Fields are read-only properties; ``params`` is decoded on first access.
- The management API (look up, list, dead-letter; not built yet) is to return other
  records, ``JobRecord`` (a job's stored state and history) and ``RunRecord`` (one row of
  ``job_runs``), read off the hot path where a dataclass per row costs nothing that
  matters; a ``Job`` is never built for them, and they are never handed to a handler.
- "Schedule" means enqueue (``schedule()``, ``schedule_many()``). Jobs that recur are
  "periodic", never "schedules".
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ._codec import decode, encode
from ._errors import ConfigError
from ._joblog import JobLog
from ._verdicts import Suspended

__all__ = ["CancelResult", "Job", "JobHandler", "Outcome", "RunInfo", "ShouldLogRun", "log_final_runs"]

# Column order of `job_claim_many ... RETURNING`; Job reads rows by position, and so do the
# runner and the flusher on their per-job paths (``Job.row``), where a property call per
# field is a measurable share of a no-op job. ROW_RUN_AT and ROW_INSERTED_AT hold epoch
# seconds (see the query): the properties build the datetimes when asked.
ROW_ID, ROW_QUEUE, ROW_TYPE, ROW_PARAMS, ROW_PRIORITY, ROW_ATTEMPT, ROW_ERRORS, ROW_LAST_ERROR = range(8)
ROW_RUN_AT, ROW_INSERTED_AT, ROW_TIMEOUT, ROW_CANCEL_REQUESTED, ROW_COUNTED, ROW_CHECKPOINT = range(8, 14)
ROW_TRACE, ROW_TENANT = 14, 15
_UTC = dt.UTC
_FROMTS = dt.datetime.fromtimestamp
_UNSET: Any = object()
_LOG_CREATED = threading.Lock()  # two threads of one run may touch job.log first at once


class Row(Protocol):
    """A claimed row: an asyncpg Record or, for jobs built by hand, a tuple."""

    def __getitem__(self, index: int, /) -> Any: ...  # noqa: ANN401 - columns of several types


class Job:
    """One run of a job, as handed to its handler.

    Attributes are read-only. ``attempt`` is the 1-based number of this run (claims so far,
    including this one); ``errors`` counts the failed runs before it. Built by hand (tests,
    inline runs), ``run_at`` and ``inserted_at`` must be timezone-aware; they read back in UTC.
    """

    __slots__ = ("_control", "_params", "_row")

    def __init__(
        self,
        *,
        id: int,  # noqa: A002 - the natural name for a job's id
        type: str,  # noqa: A002
        params: object = None,
        queue: str = "default",
        priority: int = 0,
        attempt: int = 1,
        errors: int = 0,
        last_error: str | None = None,
        run_at: dt.datetime | None = None,
        inserted_at: dt.datetime | None = None,
        timeout: float | None = None,
        checkpoint: object = None,
        tenant: str | None = None,
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        for name, when in (("run_at", run_at), ("inserted_at", inserted_at)):
            if when is not None and when.utcoffset() is None:
                raise ConfigError(f"Job: {name} must be timezone-aware (naive datetimes are ambiguous)")
        row = (
            id,
            queue,
            type,
            None,
            priority,
            attempt,
            errors,
            last_error,
            (run_at or now).timestamp(),
            (inserted_at or now).timestamp(),
        )
        saved = None if checkpoint is None else encode(checkpoint, what="checkpoint")
        self._row: Row = (*row, timeout, False, attempt, saved, None, tenant)
        self._params = params
        self._control: _Control | None = None

    def _set_params(self, value: object) -> None:
        """Replace the decoded params with the type's validated model (the runner's step)."""
        self._params = value

    async def set_progress(self, progress: float, message: str | None = None) -> None:
        """Report how far this run is: a fraction from 0 to 1, or a percent above 1 (up to 100).

        Coalesced: the worker writes a job's latest report at most once per
        ``progress_interval``, so calling this often is cheap. ``get_job`` shows it while
        the job runs. Outside a worker (a Job built by hand) it does nothing.
        """
        from .worker.progress import CURRENT, fraction_of  # noqa: PLC0415 - the worker package imports this module
        from .worker.results import storable  # noqa: PLC0415

        fraction = fraction_of(progress)
        writer = CURRENT.get()
        if writer is not None:
            text = None if message is None else storable(str(message))  # a NUL would fail the write
            writer.record(self.id, self.attempt, fraction, text)

    async def checkpoint(self, data: object) -> None:
        """Save where this run is (any JSON value); stop here if a suspend was asked for.

        The last checkpoint of a run that does not finish the job (suspended, snoozed, put
        back for a retry, interrupted by a shutdown) is stored with the job, and its next
        run reads it as :attr:`checkpoint_data`. A run cut short by a dead worker keeps the
        checkpoint of the run before. When :attr:`suspend_requested` is true, the call
        raises :class:`~pgqueue.Suspended`: the run ends there and the job stays suspended
        until ``resume()``. Nothing is written before the run ends.
        """
        encoded = encode(data, what="checkpoint")
        control = self._control
        if control is None:
            control = self._control = _Control()
        control.checkpoint = encoded
        if control.suspend:
            raise Suspended("suspended at a checkpoint")

    @property
    def log(self) -> JobLog:
        """The run's log: ``job.log.info("msg", key=value)``, also ``debug``, ``warning``, ``error``.

        Lines are kept in memory and written with the run's outcome, in the same statement
        (no round trip per line); ``get_job(id).runs[i].log`` reads them back. Capped per
        run (see ``pgqueue._joblog``). Created on first access: a handler that never logs
        costs nothing. Works from sync handlers (threads) too.
        """
        control = self._control
        if control is not None and control.log is not None:
            return control.log
        with _LOG_CREATED:
            control = self._control
            if control is None:
                control = self._control = _Control()
            if control.log is None:
                control.log = JobLog(self.id, self.type, self.attempt)
            return control.log

    @property
    def _log_text(self) -> str | None:
        """The run's lines as stored (a JSON array), or None when it wrote none."""
        control = self._control
        return None if control is None or control.log is None else control.log.encoded()

    @property
    def suspend_requested(self) -> bool:
        """True once ``suspend()`` asked for this run to stop (a type registered suspendable).

        The handler stops cooperatively: at its next :meth:`checkpoint`, or by raising
        :class:`~pgqueue.Suspended` itself.
        """
        control = self._control
        return control is not None and control.suspend

    @property
    def checkpoint_data(self) -> Any:  # noqa: ANN401 - decoded JSON
        """The checkpoint an earlier run of this job saved (decoded JSON), or None."""
        return decode(self._row[ROW_CHECKPOINT])

    @property
    def trace_context(self) -> str | None:
        """The W3C ``traceparent`` of the span that scheduled this job, or None.

        Set when the scheduler traced the call (``Scheduler(tracing=...)``, see
        :mod:`pgqueue.otel`), which continues that trace in the run's span.
        """
        trace: str | None = self._row[ROW_TRACE]
        return trace

    @property
    def tenant(self) -> str | None:
        """The tenant the job was scheduled with (``schedule(..., tenant=)``), or None."""
        tenant: str | None = self._row[ROW_TENANT]
        return tenant

    def _request_suspend(self) -> None:
        """Note a suspend request (the worker's step, on a notification or a heartbeat)."""
        control = self._control
        if control is None:
            control = self._control = _Control()
        control.suspend = True

    @property
    def _saved_checkpoint(self) -> str | None:
        """The encoded checkpoint this run made, if any (what the flush stores)."""
        control = self._control
        return None if control is None else control.checkpoint

    @property
    def row(self) -> Row:
        """The claimed row as the database returned it (internal fast path; see ROW_*)."""
        return self._row

    @classmethod
    def _from_row(cls, row: Row) -> Job:
        """Wrap a claimed row without copying it (the worker's fast path)."""
        job = cls.__new__(cls)
        job._row = row  # noqa: SLF001 - this class's own slots, set without __init__
        job._params = _UNSET  # noqa: SLF001
        job._control = None  # noqa: SLF001
        return job

    @property
    def id(self) -> int:
        """The job's id, stable across its runs."""
        v: int = self._row[ROW_ID]
        return v

    @property
    def queue(self) -> str:
        """The queue it was claimed from."""
        v: str = self._row[ROW_QUEUE]
        return v

    @property
    def type(self) -> str:
        """The registered job type name."""
        v: str = self._row[ROW_TYPE]
        return v

    @property
    def params(self) -> Any:  # noqa: ANN401 - decoded JSON
        """The decoded params (JSON: dict, list, str, number, bool or None).

        For a type registered with ``params=Model``, the validated model instance.
        """
        if self._params is _UNSET:
            self._params = decode(self._row[ROW_PARAMS])
        return self._params

    @property
    def params_json(self) -> str | None:
        """The params as stored (JSON text), for handlers that parse them themselves."""
        raw = self._row[ROW_PARAMS]
        if raw is None and self._params is not _UNSET and self._params is not None:
            return encode(self._params)  # a job built by hand (tests, inline runs)
        text: str | None = raw
        return text

    @property
    def priority(self) -> int:
        """Lower runs first."""
        v: int = self._row[ROW_PRIORITY]
        return v

    @property
    def attempt(self) -> int:
        """The number of this run, from 1."""
        v: int = self._row[ROW_ATTEMPT]
        return v

    @property
    def errors(self) -> int:
        """Failed runs before this one."""
        v: int = self._row[ROW_ERRORS]
        return v

    @property
    def last_error(self) -> str | None:
        """The error text of the last failed run, if any."""
        v: str | None = self._row[ROW_LAST_ERROR]
        return v

    @property
    def run_at(self) -> dt.datetime:
        """When the job was due (for a retry: when the retry was due), in UTC."""
        return _FROMTS(self._row[ROW_RUN_AT], _UTC)

    @property
    def inserted_at(self) -> dt.datetime:
        """When the job was scheduled, in UTC."""
        return _FROMTS(self._row[ROW_INSERTED_AT], _UTC)

    @property
    def timeout(self) -> float | None:
        """The run-time limit in seconds the job was scheduled with, if any."""
        v: float | None = self._row[ROW_TIMEOUT]
        return v

    @property
    def cancel_requested(self) -> bool:
        """True when cancel() flagged the job before this worker started it."""
        return bool(self._row[ROW_CANCEL_REQUESTED])

    def __repr__(self) -> str:
        return f"<Job id={self.id} type={self.type!r} queue={self.queue!r} attempt={self.attempt}>"


@dataclasses.dataclass(slots=True)
class _Control:
    """A run's rare state, allocated on first use: a suspend request, a checkpoint, a log."""

    suspend: bool = False
    checkpoint: str | None = None
    log: JobLog | None = None


JobHandler = Callable[[Job], Awaitable[object]] | Callable[[Job], object]
"""A job's code: ``async def fn(job) -> result`` (or a plain ``def``, run in a thread)."""


class Outcome(enum.StrEnum):
    """What happened to one run; stored in ``job_runs.outcome``."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"
    CRASHED = "crashed"
    SNOOZED = "snoozed"  # the handler raised Snooze: put back, neither an error nor a counted run
    SUSPENDED = "suspended"  # stopped at a checkpoint after suspend(): suspended, not counted


class CancelResult(enum.StrEnum):
    """What :meth:`Scheduler.cancel` did."""

    CANCELLED = "cancelled"
    """The job was waiting; it is now ended as cancelled."""
    CANCELLING = "cancelling"
    """A worker holds the job; it was told to stop it and will record it as cancelled."""
    NOT_FOUND = "not_found"
    """No live job has that id: it already ended, or never existed."""


@dataclasses.dataclass(frozen=True, slots=True)
class RunInfo:
    """One finished run, as the ``should_log_run`` hook sees it."""

    outcome: Outcome
    """What happened."""
    final: bool
    """True when the job will not run again (success, or failure without retry)."""
    error: str | None
    """Error text with traceback, for a failed run."""


ShouldLogRun = Callable[[Job, RunInfo], bool]
"""Decides whether a run gets a row in ``job_runs``."""


def log_final_runs(job: Job, run: RunInfo) -> bool:  # noqa: ARG001 - a ShouldLogRun
    """Log only a job's last run (pgxjob's ``LogFinalJobRuns``): success or final failure."""
    return run.final
