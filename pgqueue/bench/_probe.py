"""The loop-lag probe: how late a 1 ms sleep wakes on the worker's own event loop.

An application that runs a worker in its web server's process shares one event loop
between them: whatever the worker does between two awaits delays every request. The
probe measures that delay directly, as a task on the same loop::

    loop: t = perf_counter(); await asyncio.sleep(0.001); lag = perf_counter() - t - 0.001

A sample is how long the loop kept the probe waiting beyond the 1 ms it asked for; on an
idle loop it is the timer's own overshoot (the baseline). The probe does nothing else,
so it costs the loop one wake-up per millisecond and cannot be the bottleneck.

While it runs it also watches the garbage collector (``gc.callbacks``): a collection
stops the loop for its whole duration, and the count and times of the full (generation
2) ones and of the young ones (generations 0 and 1) tell whether a lag is a collection or
the worker's own work.

A late wake has two causes: the loop was busy (some task held it), or the process was
ready to run and waited for a CPU (the operating system gave the cores to others: on a
machine that also runs PostgreSQL, its backends). Linux counts the second per thread
(``/proc/thread-self/schedstat``, the nanoseconds spent runnable but not running), so
each sample also records that wait, and the summary gives the lag without it
(``held_*``: per sample, the lag minus the wait, at least 0): what the loop's own work
caused. Elsewhere only the lag is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time

import anyio

from ._harness import pct

__all__ = ["PROBE_INTERVAL_S", "LoopProbe", "gc_summary", "held_summary", "lag_summary"]

PROBE_INTERVAL_S = 0.001
SCHEDSTAT = "/proc/thread-self/schedstat"  # on-CPU ns, runnable-waiting ns, time slices (Linux)


def _open_schedstat() -> int | None:
    with contextlib.suppress(OSError):
        return os.open(SCHEDSTAT, os.O_RDONLY)
    return None


def _runq_ns(fd: int) -> int:
    """Nanoseconds this thread has spent runnable but not running (read without reopening)."""
    return int(os.pread(fd, 128, 0).split()[1])


def lag_summary(lags_ms: list[float]) -> dict[str, object]:
    """Samples, p50, p99 and max of the lags, in milliseconds."""
    return {
        "samples": len(lags_ms),
        "p50_ms": round(pct(lags_ms, 50), 3) if lags_ms else None,
        "p99_ms": round(pct(lags_ms, 99), 3) if lags_ms else None,
        "max_ms": round(max(lags_ms), 3) if lags_ms else None,
    }


def held_summary(lags_ms: list[float], waits_ms: list[float]) -> dict[str, object]:
    """The run-queue wait inside the lags, and the lags without it (the loop's own hold)."""
    if not waits_ms:
        return {}
    held = [max(0.0, lag - wait) for lag, wait in zip(lags_ms, waits_ms, strict=True)]
    return {
        "runq_p99_ms": round(pct(waits_ms, 99), 3),
        "runq_max_ms": round(max(waits_ms), 3),
        "held_p99_ms": round(pct(held, 99), 3),
        "held_max_ms": round(max(held), 3),
    }


def gc_summary(durations_ms: list[float], prefix: str = "gc2") -> dict[str, object]:
    """Count, total and longest of some collections (by default the full ones), in milliseconds."""
    return {
        f"{prefix}_count": len(durations_ms),
        f"{prefix}_total_ms": round(sum(durations_ms), 3),
        f"{prefix}_max_ms": round(max(durations_ms), 3) if durations_ms else None,
    }


class LoopProbe:
    """One measuring window: start it with ``await tg.start(probe.run)``, end it with :meth:`stop`."""

    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self.runq_ms: list[float] = []  # per sample: the wait for a CPU inside its lag (Linux)
        self.gc2_ms: list[float] = []
        self.young_ms: list[float] = []  # collections of generations 0 and 1
        self._gc_started: float | None = None
        self._stopped = False
        self.window = (0.0, 0.0)
        """Wall-clock start and end of the window (``time.time()``): what other processes stamp."""

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            full = info.get("generation") == 2  # noqa: PLR2004 - the oldest generation
            (self.gc2_ms if full else self.young_ms).append((time.perf_counter() - self._gc_started) * 1000.0)
            self._gc_started = None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Sample until :meth:`stop`; the GC callback is registered meanwhile."""
        gc.callbacks.append(self._on_gc)
        self.window = (time.time(), 0.0)
        task_status.started()
        fd = _open_schedstat()
        try:
            while not self._stopped:
                w0 = 0 if fd is None else _runq_ns(fd)
                t = time.perf_counter()
                await asyncio.sleep(PROBE_INTERVAL_S)
                lag = time.perf_counter() - t - PROBE_INTERVAL_S
                if not self._stopped:
                    self.lags_ms.append(lag * 1000.0)
                    if fd is not None:
                        self.runq_ms.append((_runq_ns(fd) - w0) / 1e6)
        finally:
            self.stop()
            if fd is not None:
                os.close(fd)

    def stop(self) -> None:
        """End the window: later samples and collections are not counted."""
        if not self._stopped:
            self.window = (self.window[0], time.time())
        self._stopped = True
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def summary(self) -> dict[str, object]:
        """The window's lag percentiles and its collections, full and young."""
        return {
            **lag_summary(self.lags_ms),
            **held_summary(self.lags_ms, self.runq_ms),
            **gc_summary(self.gc2_ms),
            **gc_summary(self.young_ms, "gc_young"),
        }
