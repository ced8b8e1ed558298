"""The loop-lag probe: how late a 1 ms sleep wakes on the worker's own event loop.

An application that runs a worker in its web server's process shares one event loop
between them: whatever the worker does between two awaits delays every request. The
probe measures that delay directly, as a task on the same loop::

    loop: t = perf_counter(); await asyncio.sleep(0.001); lag = perf_counter() - t - 0.001

A sample is how long the loop kept the probe waiting beyond the 1 ms it asked for; on an
idle loop it is the timer's own overshoot (the baseline). The probe does nothing else,
so it costs the loop one wake-up per millisecond and cannot be the bottleneck.

While it runs it also watches the garbage collector (``gc.callbacks``): a full
(generation 2) collection stops the loop for its whole duration, and its count and
times tell whether the worst lag is a collection or the worker's own work.
"""

from __future__ import annotations

import asyncio
import gc
import time

import anyio

from ._harness import pct

__all__ = ["PROBE_INTERVAL_S", "LoopProbe", "gc_summary", "lag_summary"]

PROBE_INTERVAL_S = 0.001


def lag_summary(lags_ms: list[float]) -> dict[str, object]:
    """Samples, p50, p99 and max of the lags, in milliseconds."""
    return {
        "samples": len(lags_ms),
        "p50_ms": round(pct(lags_ms, 50), 3) if lags_ms else None,
        "p99_ms": round(pct(lags_ms, 99), 3) if lags_ms else None,
        "max_ms": round(max(lags_ms), 3) if lags_ms else None,
    }


def gc_summary(durations_ms: list[float]) -> dict[str, object]:
    """Count, total and longest of the generation-2 collections, in milliseconds."""
    return {
        "gc2_count": len(durations_ms),
        "gc2_total_ms": round(sum(durations_ms), 3),
        "gc2_max_ms": round(max(durations_ms), 3) if durations_ms else None,
    }


class LoopProbe:
    """One measuring window: start it with ``await tg.start(probe.run)``, end it with :meth:`stop`."""

    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self.gc2_ms: list[float] = []
        self._gc_started: float | None = None
        self._stopped = False
        self.window = (0.0, 0.0)
        """Wall-clock start and end of the window (``time.time()``): what other processes stamp."""

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:  # noqa: PLR2004 - the oldest generation: a full collection
            return
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            self.gc2_ms.append((time.perf_counter() - self._gc_started) * 1000.0)
            self._gc_started = None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Sample until :meth:`stop`; the GC callback is registered meanwhile."""
        gc.callbacks.append(self._on_gc)
        self.window = (time.time(), 0.0)
        task_status.started()
        try:
            while not self._stopped:
                t = time.perf_counter()
                await asyncio.sleep(PROBE_INTERVAL_S)
                lag = time.perf_counter() - t - PROBE_INTERVAL_S
                if not self._stopped:
                    self.lags_ms.append(lag * 1000.0)
        finally:
            self.stop()

    def stop(self) -> None:
        """End the window: later samples and collections are not counted."""
        if not self._stopped:
            self.window = (self.window[0], time.time())
        self._stopped = True
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def summary(self) -> dict[str, object]:
        """The window's lag percentiles and its full collections."""
        return {**lag_summary(self.lags_ms), **gc_summary(self.gc2_ms)}
