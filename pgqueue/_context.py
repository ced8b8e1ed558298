"""The scheduler and the job active in the current context: :func:`current_scheduler`, :func:`current_job`.

Library code called from a handler (or from any code under ``async with scheduler:``) can
schedule follow-up jobs without being handed the scheduler or the job:

::

    async def notify_owner(order_id: int) -> None:      # called from a handler, somewhere deep
        job = pgqueue.current_job()
        await pgqueue.current_scheduler().schedule("email", {"order": order_id, "cause": job.id})

Both are :mod:`contextvars`, so each asyncio task (and each worker thread that anyio starts
for a sync handler, which runs in a copy of the caller's context) sees its own values, and
concurrent runs never see each other's job. Who sets them:

- ``async with scheduler:`` sets the scheduler for the block (reset on exit);
- a :class:`~pgqueue.Worker` sets its scheduler once for all its tasks when it starts, so
  its handlers see the scheduler that built it, whatever the caller had set;
- the runner sets the job around each handler call: one ``ContextVar.set``/``reset`` pair
  per run (about 0.1 µs), the only per-job cost of this feature;
- ``pgqueue.testing.drain()`` and ``run_job(scheduler=...)`` set them as a worker does.

Outside these, both raise :class:`ContextNotSetError` (a ``LookupError``), whose message
says where they are set.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING

from ._errors import PgQueueError

if TYPE_CHECKING:
    from ._models import Job
    from ._scheduler import Scheduler

__all__ = [
    "CURRENT_JOB",
    "CURRENT_SCHEDULER",
    "ContextNotSetError",
    "current_job",
    "current_scheduler",
    "reset_scheduler",
]

CURRENT_SCHEDULER: ContextVar[Scheduler] = ContextVar("pgqueue.current_scheduler")
"""Set by ``async with scheduler``, by a worker for its tasks, and by the testing helpers."""
CURRENT_JOB: ContextVar[Job] = ContextVar("pgqueue.current_job")
"""Set by the runner around each handler call."""


class ContextNotSetError(PgQueueError, LookupError):
    """:func:`current_scheduler` or :func:`current_job` was called where nothing set it."""


def current_scheduler() -> Scheduler:
    """The :class:`~pgqueue.Scheduler` active in this context.

    Inside a handler run by a worker (async, or sync in its thread): the worker's
    scheduler. Elsewhere: the innermost ``async with scheduler:`` block around the call.
    Raises :class:`ContextNotSetError` (a ``LookupError``) outside both.
    """
    try:
        return CURRENT_SCHEDULER.get()
    except LookupError:
        raise ContextNotSetError(
            "no current scheduler: current_scheduler() works inside a handler run by a worker "
            "(or pgqueue.testing.drain) and inside `async with scheduler:`"
        ) from None


def current_job() -> Job:
    """The :class:`~pgqueue.Job` whose handler is running in this context.

    Set for the handler's call (async, or sync in its thread) and inherited by the tasks it
    starts. Raises :class:`ContextNotSetError` (a ``LookupError``) outside a handler.
    """
    try:
        return CURRENT_JOB.get()
    except LookupError:
        raise ContextNotSetError(
            "no current job: current_job() works only inside a job's handler "
            "(run by a worker, pgqueue.testing.drain or run_job)"
        ) from None


def reset_scheduler(token: Token[Scheduler]) -> None:
    """Undo a ``CURRENT_SCHEDULER.set()`` in the context that made it.

    Where the exit runs in another context than the entry (a pytest fixture's teardown may),
    the value was set in that other context only and there is nothing to undo here.
    """
    with contextlib.suppress(ValueError):  # the token was created in a different context
        CURRENT_SCHEDULER.reset(token)
