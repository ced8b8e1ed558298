"""The public boundary's error translation: driver errors become pgqueue's own.

Every public call that touches the database (schedule, cancel, management) runs its
store call under :func:`translated`, so an application sees an outage as
:class:`DatabaseUnavailableError` and a missing or older schema as
:class:`SchemaNotMigratedError`, not as asyncpg's classes, and learns whether anything was
written. Other driver errors pass through as they are: a deadlock that kept choosing the
same call as its victim after the store's reruns (``again_on_conflict``) is asyncpg's
``DeadlockDetectedError``, and nothing of that call was written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ._errors import DatabaseUnavailableError, PgQueueError, SchemaNotMigratedError, describe
from .store.postgres import is_unavailable, is_undefined_object

__all__ = ["translate", "translated"]


def translate(action: str, schema: str, exc: Exception) -> PgQueueError | None:
    """The pgqueue error to raise instead of the driver's ``exc``, or None to let it through.

    An unreachable database becomes :class:`DatabaseUnavailableError`; a missing table or
    column (a schema never migrated, or older than the code) :class:`SchemaNotMigratedError`.
    """
    if isinstance(exc, PgQueueError):
        return None  # already ours (a WaitTimeoutError is also a TimeoutError, not an outage)
    if is_unavailable(exc):
        return DatabaseUnavailableError(
            f"{action}: the database is unavailable ({describe(exc)}); nothing was written"
        )
    if is_undefined_object(exc):
        return SchemaNotMigratedError(
            f"{action}: schema {schema!r} is not migrated or older than this pgqueue ({exc}): "
            "run `pgqueue migrate` (or `await scheduler.migrate()`); nothing was written"
        )
    return None


@asynccontextmanager
async def translated(action: str, schema: str) -> AsyncIterator[None]:
    """Raise pgqueue's error for a driver error that has one (see :func:`translate`)."""
    try:
        yield
    except Exception as exc:
        err = translate(action, schema, exc)
        if err is not None:
            raise err from exc
        raise
