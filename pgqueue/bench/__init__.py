"""``pgqueue bench`` / ``make bench``: how fast pgqueue moves jobs through PostgreSQL.

The workloads are those of ``../shared/bench/peers/common.py`` with the same parameters,
so a figure here compares directly with the peers' and with ``bench_raw.py`` (the pgqueue
design in plain asyncpg, the ceiling for this design):

(a) enqueue: 2,000 jobs one at a time, then 20,000 in bulk (chunks of 1,000);
(b) drain: 20,000 pre-queued no-op jobs, one worker at concurrency 10 and 50, timed from
    the worker's start until the database shows every job finished;
(c) pickup latency of an idle worker: 200 jobs on a 20 ms grid, p50/p95/p99;
(d) drain of a 1,000,000-job backlog (``--big``; minutes), its rate against (b)'s;
(e) two worker processes on one queue;
(f) WAL bytes, dead tuples and the server's CPU time per job, from the server's counters
    (and /proc) around each drain;
(g) the worker's RSS before and after the drain (the big one with ``--big``);
(h) get_job, list_jobs and stats over 1,000,000 logged runs and 100,000 live jobs;
(i) the drain of jobs that hold unique keys, that depend on one another in pairs, or that
    somebody waits for, against (b); and the end notifications each drain sent (none for
    jobs nobody waits for);
(j) ``pgqueue.testing.drain`` of 10,000 jobs on the in-memory backend against the same
    drain on PostgreSQL, and a worker's drain in memory;
(k) the drain with Prometheus metrics off, on, and on while scraped over HTTP at 20/s,
    interleaved rounds, each as a ratio to metrics off (``metrics``);
(q) the lag of the worker's own event loop (a task sleeping 1 ms in a loop): idle, during
    the drain of 50,000 jobs, and while 200 jobs/s are enqueued and run (``colocate``);
(r) drains of I/O-bound jobs (10 ms at C=200, 1 ms at C=50) against the limit C / W
    (``iobound``).

Each phase runs in a freshly recreated database whose name must start with ``bench_``.
Output: one JSON line on stdout, a table on stderr. :mod:`pgqueue.bench.compare` runs
this and the peers in one session (``make bench-compare``, ``make bench-ci``). Timing
thresholds belong here, never in the test suite.
"""

from __future__ import annotations

from ._harness import Params
from ._run import ALL_PHASES, DEFAULT_PHASES, run_bench

__all__ = ["ALL_PHASES", "DEFAULT_PHASES", "Params", "run_bench"]
