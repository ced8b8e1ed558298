"""The one retry schedule of every background loop: exponential, capped, reset on success.

Claims, flushes, the LISTEN reconnect and a worker's start all wait ``first``, then twice
that, up to ``cap`` seconds, while the database keeps failing; one success starts over.
No jitter: each loop belongs to one worker, and workers do not fail in lockstep often
enough to matter next to the cost of a slower recovery.
"""

from __future__ import annotations

__all__ = ["Backoff"]

FIRST_S = 0.05  # the first wait after a failure
CAP_S = 5.0  # the longest wait: an outage is noticed to be over within this


class Backoff:
    """Waits between attempts of one loop: ``first × 2**(failures - 1)``, at most ``cap``."""

    __slots__ = ("_cap", "_first", "failures")

    def __init__(self, first: float = FIRST_S, cap: float = CAP_S) -> None:
        self._first = first
        self._cap = cap
        self.failures = 0
        """Failures since the last success."""

    def failed(self) -> float:
        """Count a failure; returns the seconds to wait before the next attempt."""
        self.failures += 1
        return self.current()

    def current(self) -> float:
        """The wait that follows the failures so far (``first`` before any)."""
        # The exponent stops growing long before a float would overflow (an outage of hours).
        return min(self._cap, self._first * 2.0 ** min(max(self.failures - 1, 0), 64))

    def succeeded(self) -> None:
        """An attempt went through: the next failure waits ``first`` again."""
        self.failures = 0
