"""One benchmark run: the phases in order, each in a freshly recreated database.

Phases: ``enqueue`` (a), ``drain`` (b, with the cost (f) and the RSS (g) of each drain),
``latency`` (c), ``two_workers`` (e), ``metrics`` (k: the drain with Prometheus metrics off,
on, and scraped at 20/s, interleaved), ``unique``, ``depends_on`` and ``awaited`` (the drain
of jobs that hold unique keys, that depend on one another in pairs, or that somebody waits
for, each compared with the plain drain), ``memory`` (j: pgqueue.testing.drain on the
in-memory backend against PostgreSQL), ``manage`` (h: get_job, list_jobs and stats on 1,000,000
finished and 100,000 live jobs), ``churn`` (l: 1,000,000 jobs through the hot table with
10,000 kept queued, then its size and the claim's plan), ``limits`` (m: the drain of a queue
with a concurrency limit of 50 against the unlimited one, at C=50, interleaved), ``pull``
(p: a pull consumer's ``claim(100)`` + ``finish`` drain against the worker's at C=50,
interleaved), ``colocate`` (q: the lag of the worker's event loop, probed every 1 ms, idle,
during the drain of 50,000 jobs and while 200 jobs/s are enqueued and run), ``iobound`` (r:
drains of jobs that await 10 ms at C=200 and 1 ms at C=50, against the limit C / W) and,
opt-in because it takes minutes, ``big`` (d): the drain of a 1,000,000-job backlog, whose
rate is compared with the small drain's.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Iterable

import anyio

from pgqueue import __version__
from pgqueue.worker.collector import tune_collector

from ._churn import bench_churn
from ._colocate import bench_colocate
from ._drain import bench_drain
from ._enqueue import bench_enqueue
from ._harness import STDERR, Params
from ._iobound import bench_iobound
from ._latency import bench_latency
from ._limits import bench_limits
from ._manage import bench_manage
from ._memory import bench_memory
from ._metrics import bench_metrics
from ._pull import bench_pull
from ._report import JsonObject, emit, get_num
from ._server import DB_NAME, default_dsn, machine_info, server_info
from ._two import bench_two_workers

__all__ = ["ALL_PHASES", "DEFAULT_PHASES", "run_bench"]

DEFAULT_PHASES = (
    "enqueue",
    "drain",
    "latency",
    "two_workers",
    "unique",
    "depends_on",
    "awaited",
    "manage",
    "memory",
    "metrics",
    "churn",
    "limits",
    "pull",
    "colocate",
    "iobound",
)
ALL_PHASES = (*DEFAULT_PHASES, "big")


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


async def _feature_drains(
    target: str, params: Params, phases: tuple[str, ...], results: JsonObject
) -> JsonObject:
    """The drains of jobs that use unique keys, dependencies or wait(), against the plain one."""
    first_c = params.concurrencies[0]
    out: JsonObject = {}
    for shape in ("unique", "depends_on", "awaited"):
        if shape in phases:
            STDERR.log(f"drain {params.n:,} jobs ({shape}) at C={first_c}")
            out[f"{shape}_drain"] = await bench_drain(
                target, params, n=params.n, concurrency=first_c, shape=shape
            )
            out[f"{shape}_vs_plain"] = _ratio(
                get_num(out, f"{shape}_drain", "jps"), get_num(results, f"drain_c{first_c}", "jps")
            )
    return out


async def _other_phases(target: str, params: Params, phases: tuple[str, ...]) -> JsonObject:
    """Management calls, the in-memory backend, the cost of metrics, loop lag, I/O-bound jobs."""
    out: JsonObject = {}
    if "manage" in phases:
        STDERR.log(f"management on {params.manage_runs:,} finished and {params.manage_live:,} live jobs")
        out["manage"] = await bench_manage(target, params)
    if "memory" in phases:
        STDERR.log(f"pgqueue.testing.drain of {params.memory_n:,} jobs, in memory and on PostgreSQL")
        out["memory"] = await bench_memory(target, params)
    if "metrics" in phases:
        out["metrics"] = await bench_metrics(target, params, bench_drain)
    if "churn" in phases:
        STDERR.log(f"churn: {params.churn_n:,} jobs through the hot table, {params.churn_backlog:,} queued")
        out["churn"] = await bench_churn(target, params)
    if "limits" in phases:
        out["limits"] = await bench_limits(target, params, bench_drain)
    if "pull" in phases:
        out["pull"] = await bench_pull(target, params, bench_drain)
    if "colocate" in phases:
        out["colocate"] = await bench_colocate(target, params)
    if "iobound" in phases:
        out["iobound"] = await bench_iobound(target, params)
    return out


def _tune_collector() -> float | None:
    """The worker's once-per-process collector tuning (``collector.py``), before any clock; its ms.

    Its cost follows the size of the process's heap (here the benchmark's own imports), not
    the work of a drain, and a process pays it once: timed inside the first drain, it would
    weigh on that drain alone. None when an earlier call in this process froze it already.
    """
    t0 = time.perf_counter()
    froze = tune_collector()
    return round((time.perf_counter() - t0) * 1000.0, 1) if froze else None


async def _main(params: Params, phases: tuple[str, ...], dsn: str | None) -> JsonObject:
    target = dsn or default_dsn(DB_NAME)
    results: JsonObject = {"heap_freeze_ms": _tune_collector()}
    first_c = params.concurrencies[0]
    if "enqueue" in phases:
        STDERR.log("enqueue")
        results.update(await bench_enqueue(target, params))
    if "drain" in phases:
        for c in params.concurrencies:
            STDERR.log(f"drain {params.n:,} at C={c}")
            results[f"drain_c{c}"] = await bench_drain(target, params, n=params.n, concurrency=c)
    if "latency" in phases:
        STDERR.log("latency")
        results["latency"] = await bench_latency(target, params)
    if "two_workers" in phases:
        STDERR.log(f"two worker processes, {params.n:,} jobs at C={first_c} each")
        results["two_workers"] = await bench_two_workers(target, params, n=params.n, concurrency=first_c)
        results["two_workers_vs_one"] = _ratio(
            get_num(results, "two_workers", "jps"), get_num(results, f"drain_c{first_c}", "jps")
        )
    if "big" in phases:
        STDERR.log(f"big drain: {params.big_n:,} jobs at C={first_c}")
        results["big_drain"] = await bench_drain(
            target, params, n=params.big_n, concurrency=first_c, big=True
        )
        results["big_vs_20k"] = _ratio(
            get_num(results, "big_drain", "jps"), get_num(results, f"drain_c{first_c}", "jps")
        )
    results.update(await _feature_drains(target, params, phases, results))
    results.update(await _other_phases(target, params, phases))
    rss_phase = "big_drain" if "big_drain" in results else f"drain_c{first_c}"
    rss = results.get(rss_phase)
    if isinstance(rss, dict) and isinstance(rss.get("rss"), dict):
        results["rss"] = {"phase": rss_phase, **rss["rss"]}
    return {
        "system": "pgqueue",
        "version": __version__,
        "python": platform.python_version(),
        "loop": _loop_name(),
        "params": params.as_json(),
        "phases": list(phases),
        "server": await server_info(target),
        "machine": machine_info(),
        **results,
    }


def _loop_name() -> str:
    return "uvloop" if os.environ.get("BENCH_UVLOOP") == "1" else "asyncio"


def run_bench(
    *,
    n: int | None = None,
    concurrencies: Iterable[int] | None = None,
    dsn: str | None = None,
    phases: Iterable[str] | None = None,
    big: bool = False,
    params: Params | None = None,
) -> JsonObject:
    """Run the benchmark; print its JSON line (stdout) and table (stderr); return the line.

    ``n`` and ``concurrencies`` override ``params`` (default: the peers' parameters, read
    from the same ``BENCH_*`` environment variables). ``big`` adds the 1M-backlog phase.
    On ``BENCH_UVLOOP=1`` the run uses uvloop, as the peers do.
    """
    p = params or Params()
    if n is not None:
        p = dataclasses.replace(p, n=n)
    if concurrencies is not None:
        p = dataclasses.replace(p, concurrencies=tuple(concurrencies))
    chosen = tuple(phases) if phases is not None else DEFAULT_PHASES
    if big and "big" not in chosen:
        chosen = (*chosen, "big")
    unknown = set(chosen) - set(ALL_PHASES)
    if unknown:
        raise ValueError(f"unknown phases {sorted(unknown)}; known: {', '.join(ALL_PHASES)}")
    if not p.concurrencies:
        raise ValueError("give at least one concurrency")
    line = anyio.run(_main, p, chosen, dsn, backend_options={"use_uvloop": _loop_name() == "uvloop"})
    emit(line)
    return line
