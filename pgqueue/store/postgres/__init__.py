"""The PostgreSQL store: the only package that imports asyncpg.

One typed coroutine per named query in ``queries/*.sql``, split by noun into mixins that
share a :class:`~.pool.StoreBase` (the pool, the schema, the schema's queries):
``jobs`` (insert, claim, release, cancel), ``runs`` (the flush), ``workers`` (the lease,
reaping, vacuum), ``leader`` (the maintenance lock), ``listen`` (subscriptions) and
``migrate``. :class:`PostgresStore` implements every role of :mod:`pgqueue.store`. It works
on an asyncpg pool, pgqueue's own (:func:`create_pool`) or the application's; ``conn=``
runs a statement on a caller's connection instead, inside the caller's transaction.
"""

from __future__ import annotations

from .errors import connect_error_hint, is_conflict, is_unavailable, is_undefined_object
from .jobs import JobsMixin
from .leader import LeaderMixin
from .limits import LimitsMixin
from .listen import ListenMixin
from .migrate import MigrateMixin
from .periodic import PeriodicMixin
from .pool import HeldConnection, Pool, close_pool, create_pool
from .pull import PullMixin
from .retention import RetentionMixin
from .runs import RunsMixin
from .workers import WorkersMixin

__all__ = [
    "HeldConnection",
    "Pool",
    "PostgresStore",
    "close_pool",
    "connect_error_hint",
    "create_pool",
    "is_conflict",
    "is_unavailable",
    "is_undefined_object",
]


class PostgresStore(
    JobsMixin,
    RunsMixin,
    WorkersMixin,
    LeaderMixin,
    ListenMixin,
    MigrateMixin,
    PeriodicMixin,
    LimitsMixin,
    RetentionMixin,
    PullMixin,
):
    """Every store role on one schema of one PostgreSQL database."""
