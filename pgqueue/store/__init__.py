"""The store boundary: what each part of pgqueue needs from the database, as Protocols.

Stages and the scheduler depend on these roles, never on a driver. The one implementation
today is PostgreSQL through asyncpg (``store.postgres``, the only package that imports
asyncpg); an in-memory backend for applications' tests implements the same roles.

- :class:`EnqueueStore`: what ``schedule()``, ``schedule_many()`` and ``cancel()`` use.
- :class:`WorkerStore`: a worker's claims, flushes, lease and maintenance.
- :class:`ManageStore`: job management (look up, cancel in bulk).
- :class:`AdminStore`: migrations and the schema version.
- :class:`LimitsStore`: the global limits of queues (set, remove, list).
- :class:`PeriodicStore`: periodic declarations and the ticks they enqueue.
- :class:`RetentionStore`: the run log's day partitions and its retention.
- :class:`Notifications`: a subscription to the schema's channel for the listener.
- :class:`WorkerBackend`: a worker's store and notifications together.
- :class:`Store`: all of them, what ``Scheduler.open()`` returns.

The roles live in ``roles.py``; what they hand out or accept that outlives one call
(connections, subscriptions, the leader lock) in ``handles.py``. Import them from here.

Why roles and not one interface: each user sees only what it calls, so a fake for one
stage implements a handful of methods, and a new backend can be checked role by role.
"""

from __future__ import annotations

from .batch import FinalizeResult, FlushBatch, NewJobs, ProgressReport
from .handles import CallerConnection, Faults, Held, LeaderLock, Notifications, Subscription
from .retention_plan import RetentionPlan
from .roles import (
    ActivityRows,
    AdminStore,
    EnqueueStore,
    LimitsStore,
    ManageStore,
    PeriodicStore,
    RetentionStore,
    Store,
    WorkerBackend,
    WorkerStore,
)

__all__ = [
    "ActivityRows",
    "AdminStore",
    "CallerConnection",
    "EnqueueStore",
    "Faults",
    "FinalizeResult",
    "FlushBatch",
    "Held",
    "LeaderLock",
    "LimitsStore",
    "ManageStore",
    "NewJobs",
    "Notifications",
    "PeriodicStore",
    "ProgressReport",
    "RetentionPlan",
    "RetentionStore",
    "Store",
    "Subscription",
    "WorkerBackend",
    "WorkerStore",
]
