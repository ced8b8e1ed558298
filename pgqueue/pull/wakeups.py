"""Wake-ups of waiting ``dequeue()`` calls: one LISTEN subscription per scheduler.

It is opened by the first waiting call and closed when the last one leaves, and wakes
the callers waiting on a queue on the ``r:``, ``j:`` and ``d:`` notifications that wake
workers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from pgqueue._notifications import parse_payload
from pgqueue.store import Subscription

from .store import PullStore

__all__ = ["Wakeups"]


class Wakeups:
    """One LISTEN subscription for every dequeue() of a scheduler, opened while any waits."""

    def __init__(self, store: Callable[[], Awaitable[PullStore]]) -> None:
        self._store = store
        self._events: dict[anyio.Event, frozenset[str] | None] = {}
        self._sub: Subscription | None = None
        self._lock = anyio.Lock()

    def _on_payload(self, payload: str) -> None:
        kind, queue, _, _ = parse_payload(payload)
        if kind not in ("r", "j", "d"):
            return
        for event, queues in self._events.items():
            if queues is None or queue in queues:
                event.set()

    async def arm(
        self, old: anyio.Event | None, queues: frozenset[str] | None
    ) -> tuple[anyio.Event, Subscription]:
        """A fresh event, set on new jobs in ``queues`` (None: any), replacing ``old``.

        Armed before each claim, so a job scheduled while the claim runs sets it and the
        wait after an empty claim returns at once (anyio events cannot be cleared).
        """
        if old is not None:
            self._events.pop(old, None)
        event = anyio.Event()
        self._events[event] = queues
        try:
            async with self._lock:
                if self._sub is not None and self._sub.is_lost():
                    await self._sub.aclose()
                    self._sub = None
                if self._sub is None:
                    self._sub = await (await self._store()).subscribe(self._on_payload)
                return event, self._sub
        except BaseException:  # cancelled or failed: the caller never learns of this event
            with anyio.CancelScope(shield=True):
                await self.forget(event)
            raise

    def wake_all(self) -> None:
        """Set every waiting event (the scheduler is closing)."""
        for event in self._events:
            event.set()

    async def forget(self, event: anyio.Event) -> None:
        """Stop waking ``event``; the last waiter closes the subscription."""
        self._events.pop(event, None)
        if not self._events:
            await self.close()

    async def close(self) -> None:
        """Drop the subscription (shielded: it also runs while the caller is cancelled)."""
        with anyio.CancelScope(shield=True):
            async with self._lock:
                sub, self._sub = self._sub, None
                if sub is not None:
                    await sub.aclose()
