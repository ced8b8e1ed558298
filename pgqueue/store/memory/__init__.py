"""The in-memory store: every store role in Python data structures, for applications' tests.

It keeps the PostgreSQL store's contract (the queries' ``why`` comments are the spec) so
that a :class:`~pgqueue.Scheduler` on it, and the real :class:`~pgqueue.Worker` with its
runner, retry filters and verdicts, behave as they do on PostgreSQL: the decision code is
shared, and only the storage is here. The contract suite (``tests/contract``) runs the same
behavioural tests on both backends.

What it cannot honour, by design:

- **One process.** Jobs live in this process's memory: other processes (a ``pgqueue
  worker`` command) never see them, and nothing survives the process.
- **No crash rescue.** Workers share the process, and a stopped worker hands its jobs
  back as it stops, so there is no dead worker to reap: ``worker_reap`` does nothing.
- **No transactions.** ``schedule(conn=...)`` is accepted and ignored: the job is stored at
  once, whatever becomes of the caller's transaction.
- **Time** is a :class:`MemoryClock`: the wall clock plus an offset that
  :meth:`MemoryStore.advance` moves forward, so delayed jobs and retries become due at
  once in a test, and due jobs' queues are told as a notification would. Pull leases
  expire on it: ``advance()`` past a lease's deadline frees its job at once (``pull.py``).

Notifications are in-process: a payload reaches every subscriber on the next turn of the
event loop, as PostgreSQL delivers them after the commit. It needs no server, no socket
and no network.
"""

from __future__ import annotations

from .jobs import JobsMixin
from .limits import LimitsMixin
from .manage import ManageMixin
from .periodic import PeriodicMixin
from .pull import PullMixin
from .retention import RetentionMixin
from .rows import MEMORY_SCHEMA, MemoryClock
from .workers import WorkersMixin

__all__ = ["MEMORY_SCHEMA", "MemoryClock", "MemoryStore"]


class MemoryStore(
    JobsMixin, WorkersMixin, ManageMixin, PeriodicMixin, LimitsMixin, RetentionMixin, PullMixin
):
    """Every store role of :mod:`pgqueue.store`, in this process's memory (see the module)."""
