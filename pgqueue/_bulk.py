"""Retry every failed job of a filter, a chunk at a time: ``pgqueue jobs retry-failed`` and the dashboard.

The failed jobs are listed first (``list_jobs``, a page of :data:`~pgqueue._manage.MAX_PAGE`
at a time), then retried in chunks of :data:`RETRY_CHUNK` ids, each chunk one
``retry_many`` statement: a backlog of a million failed jobs is many short transactions,
not one that holds a million row locks. A job that another client retried in between is
skipped by its chunk's statement, and a job that fails after the listing waits for the
next bulk retry. The callbacks let the CLI draw its progress bars; the dashboard passes
none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ._errors import ConfigError
from ._manage import MAX_PAGE
from ._records import JobState

if TYPE_CHECKING:
    from ._scheduler import Scheduler

__all__ = ["RETRY_CHUNK", "failed_ids", "retry_failed", "retry_ids"]

RETRY_CHUNK = 500  # jobs per retry statement


async def failed_ids(
    scheduler: Scheduler,
    *,
    queue: str | None,
    type_: str | None,
    on_page: Callable[[int], object] | None = None,
) -> list[int]:
    """Every failed job of the filter, ascending; ``on_page(found so far)`` after each page."""
    ids: list[int] = []
    cursor: str | None = None
    while True:
        page = await scheduler.list_jobs(
            state=JobState.FAILED, queue=queue, type=type_, limit=MAX_PAGE, cursor=cursor
        )
        ids += [r.id for r in page.items]
        if on_page is not None:
            on_page(len(ids))
        if page.cursor is None:
            return sorted(ids)
        cursor = page.cursor


async def retry_ids(
    scheduler: Scheduler,
    ids: Sequence[int],
    *,
    queue: str | None,
    type_: str | None,
    chunk: int | None = None,
    on_chunk: Callable[[int], object] | None = None,
) -> list[int]:
    """Retry those of ``ids`` still failed, ``chunk`` per statement; the retried ids, in order.

    ``chunk`` None is :data:`RETRY_CHUNK`, read at the call (a test shrinks it to see the
    chunks). ``on_chunk(size of the chunk)`` runs after each statement.
    """
    size = RETRY_CHUNK if chunk is None else chunk
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"chunk must be a positive number of jobs, got {size!r}")
    retried: list[int] = []
    for start in range(0, len(ids), size):
        part = ids[start : start + size]
        retried += await scheduler.retry_many(queue=queue, type=type_, ids=part)
        if on_chunk is not None:
            on_chunk(len(part))
    return retried


async def retry_failed(
    scheduler: Scheduler, *, queue: str | None, type_: str | None, chunk: int | None = None
) -> list[int]:
    """Retry every failed job of ``queue`` and/or ``type_`` (or all), in chunks; their ids, ascending."""
    ids = await failed_ids(scheduler, queue=queue, type_=type_)
    return await retry_ids(scheduler, ids, queue=queue, type_=type_, chunk=chunk)
