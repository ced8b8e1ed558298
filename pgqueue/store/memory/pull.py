"""Pull consumers on the memory store: there are none (the pull API needs PostgreSQL).

The maintenance round asks every backend to free expired leases and forget idle pull
consumers; here there is nothing to free or forget.
"""

from __future__ import annotations

from .base import MemoryBase

__all__ = ["PullMixin"]


class PullMixin(MemoryBase):
    """The maintenance side of pull leases, empty by construction."""

    async def leases_release_expired(self, batch: int) -> int:  # noqa: ARG002 - the store role's signature
        """No leases exist here: nothing expires."""
        return 0

    async def consumers_forget(self, idle_s: float) -> int:  # noqa: ARG002
        """No pull consumers register here: nothing to forget."""
        return 0
