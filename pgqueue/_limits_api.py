"""The queue-limit methods of :class:`~pgqueue.Scheduler`: set, remove and list global limits.

A mixin of its own, as the management and scheduling APIs are. Limits live in the
database (``queue_limits``), so one call binds every worker of the schema, in any process;
what each limit means is in ``_limits.py``.

Workers look for their queues' limits when they start and every ``heartbeat_interval``
(5 s by default): a limit set, changed or removed binds a running worker from its next
look. The jobs held in the queue when a limit is set count against it at once; jobs that
a worker claims before it has seen the new limit count from its next look (a leased limit
counts the worker's running jobs of the queue as slots taken from then on).

A concurrency-only limit is kept by slot leases (``queue_leases``), the others by counting
claimed jobs (``claim_limited``). When a limit changes from one kind to the other, a worker
keeps the old kind until its next look (a lease call that finds the queue no longer leased
makes it look at once), so for up to one heartbeat interval the two counts apply side by
side and the queue can briefly run more than the new limit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

from ._boundary import translated
from ._config import check_name
from ._limits import QueueLimit, RateLimit, check_limit
from .store import Store

__all__ = ["QueueLimits"]


class QueueLimits:
    """Set, remove and list the global limits of queues."""

    schema: str
    open: Callable[[], Awaitable[Store]]

    async def set_queue_limit(
        self,
        queue: str,
        *,
        concurrency: int | None = None,
        per_key: int | None = None,
        key: str | None = None,
        rate: RateLimit | tuple[int, dt.timedelta | float] | None = None,
    ) -> QueueLimit:
        """Limit ``queue`` across all workers; replaces the queue's previous limit as a whole.

        ``concurrency``: jobs of the queue running at once; alone it is kept by slot leases
        (workers prefetch the queue's jobs and run at most their slots' worth), with
        ``per_key`` or ``rate`` it counts jobs held by workers (claimed, not finished).
        ``per_key`` with ``key``: jobs held at once per value of the params field ``key``
        (e.g. ``"customer_id"``).
        ``rate``: ``RateLimit(count, per)`` or ``(count, per)`` (a timedelta or seconds):
        at most ``count`` starts in any window of ``per``. Give at least one. A bad argument
        raises :class:`ConfigError` and writes nothing. Returns the limit as stored.

        ::

            await scheduler.set_queue_limit("emails", concurrency=3, per_key=1,
                                            key="customer_id", rate=(100, timedelta(minutes=1)))
        """
        limit = check_limit(queue, concurrency=concurrency, per_key=per_key, key=key, rate=rate)
        async with translated("set_queue_limit", self.schema):
            return await (await self.open()).queue_limit_set(limit)

    async def remove_queue_limit(self, queue: str) -> bool:
        """Remove the limits of ``queue``; False when it had none. Its rate window is forgotten."""
        check_name("queue", queue)
        async with translated("remove_queue_limit", self.schema):
            return await (await self.open()).queue_limit_remove(queue)

    async def list_queue_limits(self) -> list[QueueLimit]:
        """Every queue's limit, by queue name."""
        async with translated("list_queue_limits", self.schema):
            return await (await self.open()).queue_limit_list()
