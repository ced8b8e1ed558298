"""Work done for the whole schema, beside the jobs: by the maintenance leader.

- :mod:`.leader`: the election (a session advisory lock) and the duties the leader runs.
- :mod:`.reaper`: free the jobs of workers that stopped heartbeating.
- :mod:`.vacuum`: vacuum the hot table when dead tuples pile up.
- :mod:`.retention`: the run log's day partitions: create ahead, drop expired.

One worker leads at a time; each duty is also safe when two run at once (a handover), see
:mod:`.leader`.
"""

from __future__ import annotations

from .leader import Duty, Leader, repeat
from .reaper import Reaper
from .retention import PruneResult, Retention
from .vacuum import Vacuum

__all__ = ["Duty", "Leader", "PruneResult", "Reaper", "Retention", "Vacuum", "repeat"]
