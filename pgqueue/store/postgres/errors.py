"""What the driver's errors mean for pgqueue: unreachable, a conflict to rerun, a missing object.

The store's callers decide on retries from these (``StoreBase.is_unavailable``), the
worker waits out an unreachable database, and every statement that locks several jobs
runs again when PostgreSQL picks it as a deadlock's victim (``again_on_conflict``).
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from pgqueue._errors import describe
from pgqueue._log import CONFLICT_RERUN, get_logger

__all__ = [
    "CONFLICT_RETRIES",
    "again_on_conflict",
    "connect_error_hint",
    "is_conflict",
    "is_unavailable",
    "is_undefined_object",
]

T = TypeVar("T")
_log = get_logger()


# Errors that mean "the database cannot be reached right now": worth retrying, never a bug.
_UNAVAILABLE = (
    OSError,  # refused, reset, unreachable, DNS
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08, including a connection that went away
    asyncpg.CannotConnectNowError,  # 57P03: starting up or in recovery
    asyncpg.AdminShutdownError,  # 57P01: shut down or terminated (pg_terminate_backend)
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.TooManyConnectionsError,  # 53300
)


_PERMANENT = (
    asyncpg.ProtocolViolationError,  # 08P01, e.g. a pooler refusing a startup parameter
    ssl.SSLCertVerificationError,  # an OSError, but waiting will not fix a certificate
)
_CONNECTION_GONE = ("connection is closed", "connection was closed", "connection was lost")


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that mean the server is unreachable, restarting or dropped us."""
    if isinstance(exc, _PERMANENT):
        return False
    if isinstance(exc, asyncpg.InterfaceError):
        text = str(exc).lower()
        return any(phrase in text for phrase in _CONNECTION_GONE)
    if isinstance(exc, asyncpg.InternalClientError):
        # Right after the server terminates a pooled connection, asyncpg may hand it out once
        # more before it has seen the end of the stream; the query then fails with "cannot
        # switch to state ...; another operation is in progress" (the chaos suite provokes it).
        return "cannot switch to state" in str(exc)
    return isinstance(exc, _UNAVAILABLE)


# PostgreSQL rolled a transaction back to break a deadlock (40P01) or a serialization
# conflict (40001): nothing it did remains, and running it again is safe. pgqueue's own
# statements lock rows of one table in one order where they can, but a flush meets rows in
# the order its plan reads them, and an application's transaction in any order.
_CONFLICT = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
CONFLICT_RETRIES = 3  # runs of a transaction PostgreSQL keeps choosing as the victim


def is_conflict(exc: BaseException) -> bool:
    """True when PostgreSQL rolled the transaction back to break a conflict: run it again."""
    return isinstance(exc, _CONFLICT)


async def again_on_conflict(what: str, run: Callable[[], Awaitable[T]]) -> T:
    """``await run()``, run again (up to ``CONFLICT_RETRIES`` runs in all) while it is a conflict's victim.

    ``run`` must be one whole transaction (one statement, or its own ``transaction()``):
    a victim's transaction is rolled back entirely, so its next run starts clean. Each
    rerun is logged (``conflict_rerun``, a warning naming ``what``): deadlocks that keep
    coming back point at an application transaction locking jobs. The last conflict
    propagates.
    """
    for attempt in range(1, CONFLICT_RETRIES + 1):
        try:
            return await run()
        except _CONFLICT as exc:
            if attempt == CONFLICT_RETRIES:
                raise
            _log.warning(CONFLICT_RERUN, statement=what, attempt=attempt, error=describe(exc))
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


# Errors that mean "the schema lacks what this code expects": never migrated, or older.
_UNDEFINED = (
    asyncpg.UndefinedTableError,  # 42P01
    asyncpg.UndefinedColumnError,  # 42703
    asyncpg.InvalidSchemaNameError,  # 3F000
)


def is_undefined_object(exc: BaseException) -> bool:
    """True for errors that mean a table, column or schema of pgqueue's is missing."""
    return isinstance(exc, _UNDEFINED)


def connect_error_hint(exc: BaseException) -> str | None:
    """What to check when connecting failed for a reason waiting will not fix; None otherwise."""
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return "check the user and password in the DSN"
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return "check the user in the DSN, and pg_hba.conf"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return "check the database name in the DSN"
    if isinstance(exc, asyncpg.ClientConfigurationError):
        return "check the DSN: postgresql://user:password@host:port/database"
    return None
