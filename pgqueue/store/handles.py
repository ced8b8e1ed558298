"""What a store hands out that outlives one call: connections, subscriptions, locks.

A caller's connection (``schedule(conn=)``), a connection a stage holds for its
lifetime, a LISTEN subscription, the maintenance leader's lock, and how a backend tells an
outage or a conflict from a fault. The roles in :mod:`pgqueue.store.roles` return or accept these.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

__all__ = ["CallerConnection", "Faults", "Held", "LeaderLock", "Notifications", "Subscription"]


class CallerConnection(Protocol):
    """A connection of the caller's, inside the caller's transaction (``schedule(conn=)``).

    An ``asyncpg.Connection`` (or a connection of an asyncpg pool) fits: pgqueue runs its
    statement on it, so the job commits or rolls back with the caller's transaction.
    """

    async def fetchval(self, query: str, *args: object) -> object:
        """Run a statement, return the first column of the first row."""
        ...

    async def fetchrow(self, query: str, *args: object) -> object:
        """Run a statement, return its first row."""
        ...

    async def fetch(self, query: str, *args: object) -> list[Any]:
        """Run a statement, return all its rows."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[object]:
        """A transaction, or a savepoint inside the caller's."""
        ...


class Held(Protocol):
    """A connection a stage keeps for its lifetime (claims, flushes); opaque to the stage."""

    async def open(self) -> None:
        """Connect now rather than at the first use; a failure is left to that use to report."""
        ...

    async def release(self) -> None:
        """Give it back (when the stage stops)."""
        ...


class Subscription(Protocol):
    """A live LISTEN on the schema's channel; payloads go to the callback given at subscribe."""

    def is_lost(self) -> bool:
        """True once the connection behind it is gone."""
        ...

    async def wait_lost(self) -> None:
        """Return when the connection behind it is gone."""
        ...

    async def probe(self, payload: str) -> None:
        """Notify our own channel on this connection: the payload must come back."""
        ...

    async def aclose(self) -> None:
        """UNLISTEN and close (or give back) the connection; never raises."""
        ...


class LeaderLock(Protocol):
    """The schema's maintenance-leader lock, held until released or its session ends."""

    async def check(self, within: float) -> bool:
        """True while the lock is still held (answered within ``within`` seconds)."""
        ...

    async def release(self) -> None:
        """Hand the lock over; idempotent, never raises."""
        ...


class Faults(Protocol):
    """Which errors are worth a retry: an outage (wait), a conflict (write again at once)."""

    def is_unavailable(self, exc: BaseException) -> bool:
        """True for errors that mean the database is unreachable, restarting or dropped us."""
        ...

    def is_conflict(self, exc: BaseException) -> bool:
        """True when the database undid the write to break a conflict (a deadlock): write it again."""
        ...


class Notifications(Faults, Protocol):
    """Subscriptions to the schema's notification channel."""

    channel: str

    async def subscribe(self, on_payload: Callable[[str], None]) -> Subscription:
        """Connect and LISTEN; ``on_payload`` runs on the event loop for every notification."""
        ...
