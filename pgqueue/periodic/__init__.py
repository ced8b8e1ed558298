"""Periodic jobs: declarations in code, enqueued once per tick across every process.

``@scheduler.periodic("*/5 * * * *")`` or ``scheduler.add_periodic(...)`` declares one
(:mod:`.spec`: options and policies); :mod:`.ticks` computes when it fires;
:class:`.enqueuer.PeriodicEnqueuer` runs one round (the maintenance leader calls it, and
``scheduler.enqueue_due_periodic()``); the ``periodic`` table (sql/010) and its
compare-and-set statement make each tick one job, whichever processes offer it.

This package's ``__init__`` imports the declaration and record modules only: the
registry imports it, and the enqueuer imports the registry.
"""

from __future__ import annotations

from .records import PeriodicInfo, periodic_json
from .spec import PeriodicSpec, declare

__all__ = ["PeriodicInfo", "PeriodicSpec", "declare", "periodic_json"]
