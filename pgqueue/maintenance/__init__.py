"""Work a worker does for the whole schema, beside its own jobs.

- :mod:`.reaper`: free the jobs of workers that stopped heartbeating.
- :mod:`.vacuum`: vacuum the hot table when dead tuples pile up.

Any live worker does both; the database serialises them (row locks for reaping, an
advisory lock for the vacuum), so no leader election is needed.
"""

from __future__ import annotations

from .reaper import Reaper
from .vacuum import Vacuum

__all__ = ["Reaper", "Vacuum"]
