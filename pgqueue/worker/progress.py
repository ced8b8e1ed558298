"""Progress reports of running jobs, coalesced: at most one write per interval.

A handler calls ``await job.set_progress(0.4, "resized 4 of 10")`` as often as it likes;
each call replaces the job's pending report in memory, and :class:`ProgressWriter` writes
whatever is pending once per ``progress_interval`` in one statement for all jobs, fenced
by (worker, attempt). A worker whose jobs report nothing never wakes this stage.

The runners set :data:`CURRENT` once per runner task (not per job), so ``Job.set_progress``
finds its worker's writer through the context; outside a worker it finds none and does
nothing.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable
from typing import Protocol

import anyio

from pgqueue._errors import ConfigError
from pgqueue._signals import WorkerSignals
from pgqueue.store import ProgressReport, WorkerStore

__all__ = ["CURRENT", "ProgressSink", "ProgressWriter", "fraction_of"]


class ProgressSink(Protocol):
    """Where ``Job.set_progress`` reports go: the worker's writer, or a test's recorder."""

    def record(self, job_id: int, attempt: int, fraction: float, message: str | None) -> None:
        """Keep one report."""
        ...


CURRENT: contextvars.ContextVar[ProgressSink | None] = contextvars.ContextVar(
    "pgqueue_progress", default=None
)


def fraction_of(value: float) -> float:
    """A fraction from 0 to 1: values up to 1 are fractions, above 1 percents (at most 100)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"progress must be a number from 0 to 1 (or a percent up to 100), got {value!r}")
    if not 0 <= value <= 100:  # noqa: PLR2004 - a percent's ceiling
        raise ConfigError(f"progress must be from 0 to 1 (or a percent up to 100), got {value!r}")
    return float(value) if value <= 1 else value / 100


class ProgressWriter:
    """One worker's pending progress reports and the loop that writes them."""

    def __init__(
        self,
        *,
        store: WorkerStore,
        worker_id: Callable[[], int],
        interval: float,
        on_error: Callable[[BaseException], None],
        signals: WorkerSignals,
    ) -> None:
        self._store = store
        self._signals = signals
        self._worker_id = worker_id
        self._interval = interval
        self._on_error = on_error
        self._pending: dict[int, ProgressReport] = {}
        self._wake = anyio.Event()

    def record(self, job_id: int, attempt: int, fraction: float, message: str | None) -> None:
        """Keep the latest report of a job; the next write sends it."""
        self._pending[job_id] = ProgressReport(job_id, attempt, fraction, message)
        self._wake.set()

    async def run(self) -> None:
        """Write pending reports at most once per interval, until cancelled."""
        while True:
            await self._wake.wait()
            await anyio.sleep(self._interval)  # coalesce: later reports replace earlier ones
            self._wake = anyio.Event()
            reports, self._pending = list(self._pending.values()), {}
            try:
                await self._store.job_progress_many(self._worker_id(), reports)
                self._signals.progress_written.fire()
            except Exception as exc:  # noqa: BLE001 - progress is advisory; the next report retries
                self._on_error(exc)
