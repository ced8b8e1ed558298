"""The benchmark's pure parts: lag and /ping summaries, /proc parsing, the DB CPU arithmetic.

No timings are asserted: the figures belong to ``make bench``.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from pgqueue.bench._dbcpu import ProcStat, cpu_us_per_job, parse_stat, read_stat, tree_cpu_ticks
from pgqueue.bench._ping import ping_summary
from pgqueue.bench._probe import LoopProbe, gc_summary, lag_summary

# A real line's shape, with a command name holding spaces and parentheses (proc(5)).
STAT_LINE = (
    "4242 (postgres: a (b) c) S 2215 2215 2215 0 -1 4194560 1210 0 0 0 "
    "311 57 9 4 20 0 1 0 123456 226000896 4096 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
)


def test_parse_stat_reads_the_fields_after_the_last_parenthesis() -> None:
    stat = parse_stat(STAT_LINE)
    assert stat == ProcStat(
        pid=4242,
        comm="postgres: a (b) c",
        ppid=2215,
        utime=311,
        stime=57,
        cutime=9,
        cstime=4,
        starttime=123456,
    )


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="no /proc on this system")
def test_read_stat_of_this_process() -> None:
    stat = read_stat(os.getpid())
    assert stat is not None
    assert stat.pid == os.getpid()
    assert stat.ppid == os.getppid()
    assert min(stat.utime, stat.stime, stat.cutime, stat.cstime) >= 0


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="no /proc on this system")
def test_tree_of_the_test_runners_parent_holds_this_process() -> None:
    parent = os.getppid()
    mine = read_stat(os.getpid())
    total = tree_cpu_ticks(parent)
    assert mine is not None
    assert total is not None
    assert total >= mine.utime + mine.stime


def test_read_stat_of_a_missing_process_is_none() -> None:
    assert read_stat(2**22 + 1) is None  # above the kernel's pid limit


def test_cpu_per_job_in_microseconds() -> None:
    assert cpu_us_per_job(10.0, 10.5, 20_000) == 25.0
    assert cpu_us_per_job(None, 10.5, 20_000) is None
    assert cpu_us_per_job(10.0, None, 20_000) is None
    assert cpu_us_per_job(10.0, 10.5, 0) is None


def test_lag_summary_percentiles() -> None:
    lags = [float(i) for i in range(1, 101)]
    assert lag_summary(lags) == {"samples": 100, "p50_ms": 50.5, "p99_ms": 99.01, "max_ms": 100.0}
    assert lag_summary([]) == {"samples": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}


def test_gc_summary() -> None:
    assert gc_summary([2.0, 5.5]) == {"gc2_count": 2, "gc2_total_ms": 7.5, "gc2_max_ms": 5.5}
    assert gc_summary([]) == {"gc2_count": 0, "gc2_total_ms": 0, "gc2_max_ms": None}
    young = {"gc_young_count": 1, "gc_young_total_ms": 1.0, "gc_young_max_ms": 1.0}
    assert gc_summary([1.0], "gc_young") == young


def test_probe_counts_full_and_young_collections_only_inside_its_window() -> None:
    probe = LoopProbe()
    gc.callbacks.append(probe._on_gc)  # what run() registers, without a loop
    try:
        gc.collect(0)
        gc.collect(1)
        gc.collect()  # a full collection
    finally:
        probe.stop()
    assert probe._on_gc not in gc.callbacks
    gc.collect()  # after the window
    gc.collect(0)
    assert len(probe.gc2_ms) == 1
    assert len(probe.young_ms) == 2
    assert set(probe.summary()) >= {"gc2_count", "gc_young_count", "gc_young_max_ms"}


def test_ping_summary_keeps_the_requests_of_the_window() -> None:
    samples = [
        (9.0, 100.0, True),
        (10.0, 1.0, True),
        (10.5, 3.0, False),
        (11.0, 2.0, True),
        (11.5, 50.0, True),
    ]
    out = ping_summary(samples, (10.0, 11.0))
    assert out["requests"] == 3
    assert out["failed"] == 1
    assert (out["p50_ms"], out["max_ms"]) == (1.5, 2.0)  # of the answered ones: a failure is no answer
    assert ping_summary(samples, (20.0, 21.0))["p99_ms"] is None
