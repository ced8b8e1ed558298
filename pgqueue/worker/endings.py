"""How each way a run ends becomes its :class:`RunResult`, with its log line.

The runner decides *that* a run ended (returned, raised, was stopped, gave a verdict);
these functions say *what* is recorded: the outcome, the error text, the retry the job
type's error filter chose, and the note a stopped or refused run carries. They touch no
state of the runner, so each ending reads the same wherever the runner meets it.
"""

from __future__ import annotations

from typing import Any

from pgqueue._clock import Clock
from pgqueue._errors import ErrorWithRetry, describe
from pgqueue._log import JOB_FAILED, JOB_RETRY, JOB_STOPPED, get_logger
from pgqueue._models import ROW_COUNTED, Job, Outcome
from pgqueue._registry import JobType
from pgqueue._verdicts import Cancel, Snooze, Suspended, Verdict

from .results import RunResult, decide_retry, error_text, new_result

__all__ = ["failed", "gave_up", "interrupted", "stopped", "verdict"]

_log = get_logger()


def _lines(job: Job) -> str | None:
    """What the run wrote through ``job.log`` so far (a JSON array), or None.

    Taken when the run's result is made: lines a sync handler's abandoned thread writes
    after that (past a timeout or a cancel) are not stored.
    """
    return job._log_text  # noqa: SLF001 - the run's own state, read by the worker


def _fields(job: Job) -> dict[str, Any]:
    return {"job_id": job.id, "type": job.type, "queue": job.queue, "attempt": job.attempt}


def failed(
    clock: Clock,
    job: Job,
    jt: JobType | None,
    exc: BaseException,
    started: float,
    *,
    outcome: Outcome = Outcome.FAILED,
) -> RunResult:
    """A run that raised (or timed out): the type's filter decides whether it runs again."""
    if jt is None:  # unknown types end at once
        retry, text = None, error_text(exc)
    else:  # max_attempts caps every policy
        retry, text = decide_retry(job, jt.retry, exc, last_attempt=job.row[ROW_COUNTED] >= jt.max_attempts)
    finished = clock.time()
    fields = _fields(job) | {"duration_s": round(finished - started, 6), "error": describe(exc)}
    if retry is not None:
        when = retry.at.isoformat() if retry.at is not None else f"+{retry.delay:g}s"
        _log.info(JOB_RETRY, **fields, outcome=outcome.value, retry_at=when)
    else:
        _log.warning(JOB_FAILED, **fields, outcome=outcome.value)
    return new_result((job, outcome, started, finished, text, None, retry, 1, _lines(job)))


def verdict(clock: Clock, job: Job, given: Verdict, started: float) -> RunResult:
    """A handler's verdict: cancel or skip (final), or snooze or suspend (put back, not counted)."""
    fields = _fields(job)
    if isinstance(given, Cancel):
        _log.info(JOB_STOPPED, **fields, outcome="cancelled", note=given.note)
        note = given.note or "cancelled by its handler"
        return new_result((job, Outcome.CANCELLED, started, clock.time(), note, None, None, 0, _lines(job)))
    if isinstance(given, Suspended):
        _log.info(JOB_STOPPED, **fields, outcome="suspended", note=given.note)
        stay = ErrorWithRetry(given, 0)  # put back; the flush leaves it suspended
        note = given.note or "suspended"
        return new_result((job, Outcome.SUSPENDED, started, clock.time(), note, None, stay, 0, _lines(job)))
    if isinstance(given, Snooze):
        _log.info(JOB_STOPPED, **fields, outcome="snoozed", note=given.note)
        again = ErrorWithRetry(given, given.delay)
        return new_result(
            (job, Outcome.SNOOZED, started, clock.time(), given.note, None, again, 0, _lines(job))
        )
    _log.info(JOB_STOPPED, **fields, outcome="skipped", note=given.note)
    note = f"skipped: {given.note}" if given.note else "skipped"
    return new_result((job, Outcome.SUCCEEDED, started, clock.time(), note, None, None, 0, _lines(job)))


def interrupted(job: Job, started: float, finished: float, note: str) -> RunResult:
    """A run the worker cut short: put back at once, not counted as an error."""
    again = ErrorWithRetry(InterruptedError(note), 0)
    return new_result((job, Outcome.INTERRUPTED, started, finished, note, None, again, 0, _lines(job)))


def stopped(
    clock: Clock, job: Job, jt: JobType, reason: Outcome, started: float, *, timeout: float | None
) -> RunResult:
    """A run the runner interrupted on purpose: past its timeout, cancelled, or at shutdown."""
    if reason is Outcome.TIMEOUT:
        error = TimeoutError(f"the run exceeded its timeout of {timeout:g} s")
        return failed(clock, job, jt, error, started, outcome=reason)
    finished = clock.time()
    if reason is Outcome.CANCELLED:
        _log.info(JOB_STOPPED, outcome="cancelled", **_fields(job))
        note = "cancelled while running"
        return new_result((job, reason, started, finished, note, None, None, 0, _lines(job)))
    _log.info(JOB_STOPPED, outcome="interrupted", **_fields(job))
    note = "interrupted: the worker stopped before the run finished; the job runs again"
    return interrupted(job, started, finished, note)


def gave_up(clock: Clock, job: Job, jt: JobType, started: float) -> RunResult | None:
    """A claimed job past its ``max_attempts``, ended without running; None if it is within them."""
    counted = job.row[ROW_COUNTED]
    if counted <= jt.max_attempts:
        return None
    error = (
        f"gave up: this would be run {counted} of a job allowed max_attempts={jt.max_attempts}; "
        f"the last run ended with: {job.last_error or 'no error recorded'}"
    )
    _log.warning(JOB_FAILED, **_fields(job), error=error)
    return new_result((job, Outcome.FAILED, started, clock.time(), error, None, None, 1, None))
