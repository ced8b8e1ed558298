"""What a run produces and what the stages count: the records passed between runners and flusher.

:class:`RunResult` is one finished run as the flusher needs it; :class:`RunStats` the
counters the runners bump and the fetcher reads; :func:`error_text` and :func:`storable`
turn an error into text PostgreSQL accepts.
"""

from __future__ import annotations

import traceback
from typing import Any, NamedTuple

from pgqueue._errors import ErrorWithRetry
from pgqueue._models import Job, Outcome
from pgqueue._retry import ErrorFilter
from pgqueue._text import storable

__all__ = ["RunResult", "RunStats", "decide_retry", "error_text", "new_result", "storable"]


class RunResult(NamedTuple):
    """One finished run, as the flusher needs it."""

    job: Job
    outcome: Outcome
    started: float  # wall clock, epoch seconds
    finished: float
    error: str | None  # text with traceback
    result: str | None  # JSON text of the handler's return value
    retry: ErrorWithRetry | None  # set when the job runs again
    error_inc: int  # added to the job's error count (0 for a success or an interruption)
    log: str | None = None  # the lines the handler wrote through job.log (a JSON array), if any


def new_result(values: tuple[Any, ...]) -> RunResult:
    """Build a RunResult without NamedTuple's keyword handling (half the cost, once per job)."""
    return tuple.__new__(RunResult, values)


class RunStats:
    """Counters the runners bump and the fetcher reads (one event loop: no locks)."""

    __slots__ = ("busy_s", "debug", "finished", "outstanding")

    def __init__(self) -> None:
        self.outstanding = 0  # claimed and not finished; the fetcher adds, runners subtract
        self.finished = 0  # runs finished since start
        self.busy_s = 0.0  # handler seconds summed over finished runs
        self.debug = False  # per-job DEBUG events on; the fetcher refreshes it per claimed batch


def decide_retry(
    job: Job, retry: ErrorFilter | None, exc: BaseException, *, last_attempt: bool
) -> tuple[ErrorWithRetry | None, str]:
    """A failed run's fate: the retry to write (None: final) and the error text to store.

    The type's error filter decides (a filter that raises makes its own error final); with
    no filter only an ``ErrorWithRetry`` retries. ``last_attempt`` (the run used the job's
    last allowed attempt) makes any decision final. The text is the run's own error, or the
    filter's replacement when that is final.
    """
    decided: BaseException = exc
    if retry is not None:
        try:
            decided = retry(job, exc)
        except BaseException as filter_exc:  # noqa: BLE001 - a broken filter must not lose the job
            decided = filter_exc
    elif isinstance(exc, ErrorWithRetry):
        decided = exc
    again = decided if isinstance(decided, ErrorWithRetry) and not last_attempt else None
    return again, error_text(exc if decided is exc or again is not None else decided)


def error_text(exc: BaseException) -> str:
    """The error as stored: type, message and traceback (the wrapped error for a retry)."""
    inner = exc.error if isinstance(exc, ErrorWithRetry) else exc
    return storable("".join(traceback.format_exception(inner)).rstrip())
