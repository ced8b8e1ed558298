"""Injectable time, after River's ``Archetype.Time``: tests pass a clock, nobody mocks ``time``.

Only two readings are needed: wall time for the run log's timestamps and a monotonic
reading for intervals. Anything stored as a schedule uses the database's ``now()``.
"""

from __future__ import annotations

import time as _time
from typing import Protocol

__all__ = ["Clock", "SystemClock", "ignore"]


class Clock(Protocol):
    """A source of time."""

    def time(self) -> float:
        """Seconds since the epoch (wall clock)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...


class SystemClock:
    """The real clocks."""

    time = staticmethod(_time.time)
    monotonic = staticmethod(_time.monotonic)


def ignore(_value: object) -> None:
    """A callback that does nothing: the default for optional hooks."""
