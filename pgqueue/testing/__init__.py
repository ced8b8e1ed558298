"""Testing support for applications that use pgqueue.

- :func:`drain` runs every due job of a scheduler to completion in the calling task, with
  the worker's own runner (verdicts, retry filters, timeouts), and returns the runs;
- :func:`advance` moves the in-memory backend's clock, so delayed jobs and retries are due;
- :func:`run_job` runs one handler inline on a realistic :class:`~pgqueue.Job` and returns
  its :class:`JobOutcome`, with no scheduler and no database;
- :func:`assert_scheduled` and :func:`refute_scheduled` check what an application
  scheduled, with a diff-style message when they fail.

They work on both backends (``Scheduler.in_memory()`` and PostgreSQL), from tests written
with pytest-asyncio or with anyio's pytest plugin (asyncio). The pytest plugin
(:mod:`pgqueue.testing.plugin`) provides the ``pgqueue_scheduler`` and
``pgqueue_pg_scheduler`` fixtures.
"""

from __future__ import annotations

from pgqueue.store.memory import MemoryClock

from .assertions import assert_scheduled, refute_scheduled
from .running import DEFAULT_MAX_RUNS, DrainedRun, JobOutcome, advance, drain, run_job

__all__ = [
    "DEFAULT_MAX_RUNS",
    "DrainedRun",
    "JobOutcome",
    "MemoryClock",
    "advance",
    "assert_scheduled",
    "drain",
    "refute_scheduled",
    "run_job",
]
