"""Every error pgqueue raises on purpose, under one root.

::

    PgQueueError
    ├── ConfigError                 (also ValueError) a bad option, named in the message
    ├── UnknownJobTypeError         (also ValueError) scheduling a type nobody registered
    ├── ParamsEncodeError           (also TypeError)  params orjson cannot encode
    ├── SchemaError                 the database schema does not match this code
    │   ├── SchemaNotMigratedError  older than the code (or empty): run `pgqueue migrate`
    │   └── SchemaTooNewError       newer than the code: upgrade pgqueue
    └── ErrorWithRetry              raised or returned by a handler: run again at a time

Boundary errors also subclass the builtin a caller would catch (``ValueError``,
``TypeError``), so ``except ValueError`` keeps working for code that does not know us.
"""

from __future__ import annotations

import datetime as dt

__all__ = [
    "ConfigError",
    "ErrorWithRetry",
    "ParamsEncodeError",
    "PgQueueError",
    "SchemaError",
    "SchemaNotMigratedError",
    "SchemaTooNewError",
    "UnknownJobTypeError",
]


class PgQueueError(Exception):
    """Root of pgqueue's errors."""


class ConfigError(PgQueueError, ValueError):
    """An option is out of range or of the wrong kind; raised at construction."""


class UnknownJobTypeError(PgQueueError, ValueError):
    """A job type was scheduled that no ``@scheduler.job`` registered; nothing was written."""


class ParamsEncodeError(PgQueueError, TypeError):
    """Job params (or a handler's result) cannot be encoded as JSON; nothing was written."""


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
            seconds = retry_at.total_seconds() if isinstance(retry_at, dt.timedelta) else float(retry_at)
            if not seconds >= 0:  # also rejects NaN
                raise ConfigError(f"ErrorWithRetry: delay must be >= 0 seconds, got {seconds!r}")
            self.at = None
            self.delay = seconds
        self.error = error
        super().__init__(str(error))

    def __repr__(self) -> str:
        when = self.at.isoformat() if self.at is not None else f"+{self.delay:g}s"
        return f"ErrorWithRetry({self.error!r}, {when})"
