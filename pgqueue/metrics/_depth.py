"""The queue-depth gauge: one query (``job_stats``, behind ``Scheduler.stats``), cached, on the worker's loop.

The query is asynchronous and runs on the event loop of the worker that registered the
source (its pool belongs to that loop), while a scrape may arrive in three ways:

- from another thread (prometheus-client's HTTP server): the thread hands the refresh to
  the worker's loop (``run_coroutine_threadsafe``) and waits for it, at most ``timeout``;
- on the worker's loop, through :meth:`Depth.refresh` awaited first (the ASGI app): the
  query runs in the caller's task;
- on the worker's loop without that (``generate_latest`` called in a coroutine): waiting
  there would block the loop that has to answer, so the scrape gets the cached value and a
  refresh is started in the background for the next one.

A value is reused for ``ttl`` seconds, and scrapes that find it stale at the same time
share one query, so a scrape loop at 20/s costs about one query per ``ttl``. A failed
query empties the cache (the gauge is left out; the scrape still answers) and is retried
no sooner than ``ttl`` later.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Protocol, runtime_checkable

from pgqueue._errors import describe
from pgqueue._log import get_logger
from pgqueue._records import JobState

__all__ = ["Depth", "StatsSource"]

METRICS_DEPTH_FAILED = "metrics_depth_failed"
_log = get_logger()


@runtime_checkable
class StatsSource(Protocol):
    """A store that counts live jobs by (queue, type, state): PostgreSQL's and the memory backend's."""

    async def job_stats(self) -> list[tuple[str, str, JobState, int]]:
        """Live jobs counted by (queue, type, state)."""
        ...


class _Source:
    __slots__ = ("fetch", "loop", "owner", "queues")

    def __init__(
        self,
        owner: object,
        loop: asyncio.AbstractEventLoop,
        fetch: Callable[[], Awaitable[list[tuple[str, str, JobState, int]]]],
        queues: Sequence[str],
    ) -> None:
        self.owner = owner
        self.loop = loop
        self.fetch = fetch
        self.queues = tuple(queues)


class Depth:
    """Pending jobs per queue, fetched at most once per ``ttl`` seconds."""

    def __init__(self, *, ttl: float, timeout: float) -> None:
        self.ttl = ttl
        self.timeout = timeout
        self._sources: list[_Source] = []  # one per live worker; the newest is queried
        self._source: _Source | None = None
        self._value: dict[str, int] | None = None
        self._fetched_at = -float("inf")  # monotonic time of the last attempt
        self._inflight: asyncio.Task[None] | None = None
        self.queries = 0
        """Queries sent so far (tests and the benchmark read it)."""

    def set_source(self, owner: object, store: StatsSource, queues: Sequence[str]) -> None:
        """Query ``store`` on the running loop from now on (the last worker to start wins)."""
        self._sources.append(_Source(owner, asyncio.get_running_loop(), store.job_stats, queues))
        self._use(self._sources[-1])

    def clear_source(self, owner: object) -> None:
        """``owner`` stops: forget its source; another live worker's takes over, if any."""
        self._sources = [s for s in self._sources if s.owner is not owner]
        if self._source is not None and self._source.owner is owner:
            self._use(self._sources[-1] if self._sources else None)

    def _use(self, source: _Source | None) -> None:
        self._source, self._value, self._fetched_at, self._inflight = source, None, -float("inf"), None

    def _fresh(self) -> bool:
        return time.monotonic() - self._fetched_at < self.ttl

    async def refresh(self) -> None:
        """Query now unless the cached value is fresh; from any event loop, never raises."""
        src = self._source
        if src is None or self._fresh():
            return
        if _running_loop() is src.loop:
            await self._refresh_here(src)
            return
        with contextlib.suppress(TimeoutError, concurrent.futures.CancelledError):
            future = _submit(self._refresh_here(src), src.loop)
            if future is not None:
                await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)

    def for_scrape(self) -> dict[str, int] | None:
        """The depth per queue for a synchronous scrape (see the module docstring); None: unknown."""
        src = self._source
        if src is not None and not self._fresh():
            if _running_loop() is src.loop:
                if self._inflight is None or self._inflight.done():
                    self._inflight = src.loop.create_task(self._query(src))
            else:
                future = _submit(self._refresh_here(src), src.loop)
                if future is not None:
                    try:
                        future.result(self.timeout)
                    except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
                        future.cancel()  # the query goes on in its task; this scrape goes without
        value = self._value
        return None if value is None else dict(value)

    async def _refresh_here(self, src: _Source) -> None:
        """On the source's loop: join the query in flight, or start one."""
        if self._fresh():
            return
        task = self._inflight
        if task is None or task.done():
            task = self._inflight = asyncio.get_running_loop().create_task(self._query(src))
        await asyncio.shield(task)

    async def _query(self, src: _Source) -> None:
        self.queries += 1
        try:
            async with asyncio.timeout(self.timeout):
                rows = await src.fetch()
        except Exception as exc:  # noqa: BLE001 - a database outage must not fail the scrape
            _log.warning(METRICS_DEPTH_FAILED, error=describe(exc), retry_in_s=self.ttl)
            depth = None
        else:
            depth = dict.fromkeys(src.queues, 0)
            for queue, _type, state, n in rows:
                if state == JobState.PENDING:
                    depth[queue] = depth.get(queue, 0) + n
        if self._source is src:  # not replaced or cleared meanwhile
            self._value = depth
            self._fetched_at = time.monotonic()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _submit(
    coro: Coroutine[object, object, None], loop: asyncio.AbstractEventLoop
) -> concurrent.futures.Future[None] | None:
    """Run ``coro`` on ``loop`` from another thread; None when that loop is closed."""
    try:
        return asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:
        coro.close()  # never started: close it, or it warns that it was never awaited
        return None
