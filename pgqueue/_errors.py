"""Every error pgqueue raises on purpose, under one root.

::

    PgQueueError
    ├── ConfigError                 (also ValueError) a bad option, named in the message
    ├── UnknownJobTypeError         (also ValueError) scheduling a type nobody registered
    ├── JobNotFound                 (also LookupError) no live or finished job has that id
    ├── InvalidStateError           (also ValueError) the job's state does not allow that
    │   ├── NotPending              dequeue_by_id(): the job is not waiting to run
    │   └── NotRunning              the job is not running under the caller's claim
    │       └── LeaseLost           a lease call: the lease no longer holds its job; nothing changed
    ├── JobCancelled                a lease's job was cancelled: stop working on it
    ├── WorkerNotFound              (also LookupError) no registered worker has that id
    ├── WorkerHasActiveJobs         remove_worker(): the worker still holds running jobs
    ├── ParamsEncodeError           (also TypeError)  params orjson cannot encode
    ├── ParamsValidationError (_params.py) (also ValueError) params the type's model refuses
    ├── WaitTimeoutError (_waiting.py)     (also TimeoutError) wait()'s deadline passed
    ├── ContextNotSetError (_context.py)   (also LookupError) current_scheduler() or
    │                               current_job() where nothing set them
    ├── DatabaseUnavailableError    (also ConnectionError) the server could not be reached;
    │                               nothing was written
    ├── SchemaError                 the database schema does not match this code
    │   ├── SchemaNotMigratedError  older than the code (or empty): run `pgqueue migrate`
    │   └── SchemaTooNewError       newer than the code: upgrade pgqueue
    ├── ErrorWithRetry              raised or returned by a handler: run again at a time
    └── Verdict (_verdicts.py)      raised by a handler: Cancel, Skip, Snooze

Boundary errors also subclass the builtin a caller would catch (``ValueError``,
``TypeError``), so ``except ValueError`` keeps working for code that does not know us.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math

MAX_DELAY_S = 100 * 365.25 * 86400  # a century: anything longer is a bug, and PostgreSQL would overflow

__all__ = [
    "MAX_DELAY_S",
    "ConfigError",
    "DatabaseUnavailableError",
    "ErrorWithRetry",
    "InvalidStateError",
    "JobCancelled",
    "JobNotFound",
    "LeaseLost",
    "NotPending",
    "NotRunning",
    "ParamsEncodeError",
    "PgQueueError",
    "SchemaError",
    "SchemaNotMigratedError",
    "SchemaTooNewError",
    "UnknownJobTypeError",
    "WorkerHasActiveJobs",
    "WorkerNotFound",
    "check_delay",
    "describe",
    "unwrap_group",
]


def check_delay(value: float | dt.timedelta, name: str) -> float:
    """Seconds in [0, a century]: NaN, infinities and overflowing delays raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int | float | dt.timedelta):
        raise ConfigError(f"{name} must be a number of seconds or a timedelta, got {value!r}")
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else float(value)
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_DELAY_S):
        raise ConfigError(f"{name} must be between 0 seconds and a century, got {value!r}")
    return seconds


def unwrap_group(exc: BaseException) -> BaseException:
    """The one error that matters inside the (nested) exception groups of task groups.

    anyio wraps an error raised in a task in an ``ExceptionGroup``; callers of
    ``worker.run()`` and the CLI want the error itself. Cancellations are skipped when a
    real error sits beside them. When several real errors came at once, the first is
    returned and the others are named in its notes.
    """
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop(0)
        if isinstance(e, BaseExceptionGroup):
            stack[:0] = list(e.exceptions)
        else:
            leaves.append(e)
    real = [e for e in leaves if not isinstance(e, asyncio.CancelledError)]
    picked = (real or leaves)[0]
    if len(real) > 1:
        picked.add_note("at the same time: " + "; ".join(describe(e) for e in real[1:]))
    return picked


def describe(exc: BaseException) -> str:
    """``Type: message``, the one-line form of an error in logs, notes and the CLI."""
    return f"{type(exc).__name__}: {exc}"


class PgQueueError(Exception):
    """Root of pgqueue's errors."""


class ConfigError(PgQueueError, ValueError):
    """An option is out of range or of the wrong kind; raised at construction."""


class UnknownJobTypeError(PgQueueError, ValueError):
    """A job type was scheduled that no ``@scheduler.job`` registered; nothing was written."""


class JobNotFound(PgQueueError, LookupError):  # noqa: N818 - kronos' and River's name for it
    """No live or finished job has that id (or its runs were never logged)."""


class InvalidStateError(PgQueueError, ValueError):
    """The job's state does not allow the transition (``job 42 is succeeded``); nothing changed.

    ``state`` is the job's state when the call was refused.
    """

    def __init__(self, job_id: int, state: str, action: str) -> None:
        super().__init__(f"cannot {action} job {job_id}: job {job_id} is {state}")
        self.job_id = job_id
        self.state = state


class NotPending(InvalidStateError):  # noqa: N818 - osbuild's name for it
    """``dequeue_by_id()`` found the job, but not waiting to run (running, suspended, ended)."""

    def __init__(self, job_id: int, state: str) -> None:
        super().__init__(job_id, state, "dequeue")


class NotRunning(InvalidStateError):  # noqa: N818 - osbuild's name for it
    """The call needs the job running under the caller's claim, and it is not.

    osbuild's ``ErrNotRunning``. ``state`` says what the job is instead: ``pending``,
    ``suspended``, ``waiting``, ``running`` (under another claim) or ``ended``.
    """

    def __init__(self, job_id: int, state: str, action: str) -> None:
        super().__init__(job_id, state, action)


class JobCancelled(PgQueueError):  # noqa: N818 - osbuild's name for it
    """The leased job was cancelled (``cancel()``) while its lease held it.

    The lease's heartbeat raises it so that the consumer stops; finishing or failing it
    then ends the job as cancelled. ``job_id`` is the job's id.
    """

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} was cancelled")
        self.job_id = job_id


class LeaseLost(NotRunning):
    """The lease no longer holds its job, so the call changed nothing (a :class:`NotRunning`).

    The lease expired and the job was freed (and perhaps leased again), or it was already
    finished, failed or requeued through this token, or the job was removed. Whatever the
    consumer did with the job must be treated as not having happened. ``state`` is what
    the job is now (see :class:`NotRunning`), ``token`` the lease's.
    """

    def __init__(self, token: str, job_id: int, state: str) -> None:
        super().__init__(job_id, state, "act on")
        self.args = (f"lease {token} no longer holds job {job_id}: job {job_id} is {state}",)
        self.token = token


class WorkerNotFound(PgQueueError, LookupError):  # noqa: N818 - osbuild's name for it
    """No registered worker or pull consumer has that id (it exited or was reaped)."""


class WorkerHasActiveJobs(PgQueueError):  # noqa: N818 - osbuild's name for it
    """``remove_worker()`` refused: the worker holds running jobs (pass ``force=True``)."""

    def __init__(self, worker_id: int, held: int) -> None:
        super().__init__(f"worker {worker_id} holds {held} running job(s); force=True releases them")
        self.worker_id = worker_id
        self.held = held


class ParamsEncodeError(PgQueueError, TypeError):
    """Job params (or a handler's result) cannot be encoded as JSON; nothing was written."""


class DatabaseUnavailableError(PgQueueError, ConnectionError):
    """The database could not be reached (down, restarting, network): nothing was written.

    The cause (``__cause__``) is the driver's error. Retrying later is safe.
    """


class SchemaError(PgQueueError):
    """The database schema and this version of pgqueue do not match."""


class SchemaNotMigratedError(SchemaError):
    """The schema is missing or older than the code: run ``pgqueue migrate``."""


class SchemaTooNewError(SchemaError):
    """The schema was migrated by a newer pgqueue; this code must not touch it."""


class ErrorWithRetry(PgQueueError):  # noqa: N818 - pgxjob's name, kept on purpose
    """Ask for another run of the job at a chosen time.

    A handler raises (or returns) it to retry; an error filter returns it to turn an error
    into a retry. ``retry_at`` is an aware datetime (absolute), or a ``timedelta`` or a
    number of seconds (relative). Relative delays are added to the *database* clock when
    the result is written, so worker and server clocks never mix.
    """

    def __init__(self, error: BaseException, retry_at: dt.datetime | dt.timedelta | float) -> None:
        if isinstance(retry_at, dt.datetime):
            if retry_at.tzinfo is None:
                raise ConfigError("ErrorWithRetry: retry_at must be timezone-aware")
            self.at: dt.datetime | None = retry_at
            self.delay = 0.0
        else:
            seconds = check_delay(retry_at, "ErrorWithRetry delay")
            self.at = None
            self.delay = seconds
        self.error = error
        super().__init__(str(error))

    def __repr__(self) -> str:
        when = self.at.isoformat() if self.at is not None else f"+{self.delay:g}s"
        return f"ErrorWithRetry({self.error!r}, {when})"
