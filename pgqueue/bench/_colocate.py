"""Workload (q): what a worker does to the event loop it shares with an application.

A worker often runs inside a web server's process, on its event loop. The loop-lag probe
(``_probe``: a task that sleeps 1 ms in a loop and records how late it wakes) runs on the
worker's loop in three windows, in this process:

(a) ``baseline``: the probe alone for ``colo_baseline_s`` (1 s), with the scheduler open
    and no worker: the timer's own overshoot on this machine;
(b) ``drain``: (b)'s durable drain of ``colo_n`` (50,000) pre-queued no-op jobs, one worker
    at C=10 with default settings, the probe running from the worker's report that it started until the
    database shows every job finished; its rate is measured exactly as (b)'s, and the
    full (generation 2) garbage collections inside the window are counted and timed;
(c) ``steady``: the same scheduler enqueues single jobs (``schedule()``) open-loop at
    ``colo_rate`` per second (200) on a fixed grid for ``colo_steady_s`` (5 s), each call
    its own task so a slow one delays no other, while a worker (C=10) on the same loop runs
    them; the probe runs while the calls go out, and each call's duration is kept;
(d) ``ping``: an HTTP endpoint on the same loop (``_ping``: Starlette served by uvicorn
    in this process, ``GET /ping`` sent at 200/s open-loop from another process), for
    ``colo_baseline_s`` with no worker (``idle``), then during (b)'s drain again, with the
    probe; skipped without the ``web`` extra.

Each window reports the samples and the p50, p99 and max lag in milliseconds. The issue
asks for a lag during the drain of at most 2 ms at p99 and 5 ms at most.
"""

from __future__ import annotations

import time

import anyio

from pgqueue import Scheduler

from ._drain import bench_drain
from ._harness import JOB_TYPE, STDERR, Params, Tracker, fresh_scheduler, payload_for, pct
from ._ping import RATE as PING_RATE
from ._ping import ping_available, served_ping
from ._probe import PROBE_INTERVAL_S, LoopProbe
from ._report import JsonObject, get_num

__all__ = ["CONCURRENCY", "TARGET_MAX_MS", "TARGET_P99_MS", "bench_colocate", "colocate_rows"]

CONCURRENCY = 10
IDLE_S = 0.5  # the worker idles before the first enqueue: it must be waiting, not starting
WAIT_S = 30.0  # ceiling for the last enqueued jobs to run
TARGET_P99_MS = 2.0  # the targets for the lag during the drain
TARGET_MAX_MS = 5.0


async def _baseline(params: Params) -> JsonObject:
    probe = LoopProbe()
    async with anyio.create_task_group() as tg:
        await tg.start(probe.run)
        await anyio.sleep(params.colo_baseline_s)
        probe.stop()
    return {"s": params.colo_baseline_s, **probe.summary()}


async def _steady(scheduler: Scheduler, tracker: Tracker, params: Params) -> JsonObject:
    n = max(1, round(params.colo_rate * params.colo_steady_s))
    spacing = 1.0 / params.colo_rate
    tracker.reset(n)
    worker = scheduler.worker(concurrency=CONCURRENCY)
    probe = LoopProbe()
    enqueue_ms: list[float] = []

    async def enqueue(i: int) -> None:
        t = time.perf_counter()
        await scheduler.schedule(JOB_TYPE, payload_for(i))
        enqueue_ms.append((time.perf_counter() - t) * 1000.0)

    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        await anyio.sleep(IDLE_S)
        await tg.start(probe.run)
        t0 = time.perf_counter()
        async with anyio.create_task_group() as calls:
            for i in range(n):
                delay = t0 + i * spacing - time.perf_counter()
                if delay > 0:
                    await anyio.sleep(delay)
                calls.start_soon(enqueue, i)
        sent_s = time.perf_counter() - t0
        probe.stop()
        with anyio.move_on_after(WAIT_S):
            await tracker.done.wait()
        await worker.shutdown()
    return {
        "rate": params.colo_rate,
        "s": round(sent_s, 3),
        "concurrency": CONCURRENCY,
        "enqueued": len(enqueue_ms),
        "ran": tracker.count,
        **probe.summary(),
        "enqueue_p50_ms": round(pct(enqueue_ms, 50), 3),
        "enqueue_p99_ms": round(pct(enqueue_ms, 99), 3),
        "enqueue_max_ms": round(max(enqueue_ms), 3) if enqueue_ms else None,
    }


async def bench_colocate(dsn: str, params: Params) -> JsonObject:
    """The three windows (module docstring): lag percentiles, the drain's rate, enqueue times."""
    tracker = Tracker()
    async with fresh_scheduler(dsn, tracker) as scheduler:
        STDERR.log(f"colocate: the loop-lag probe alone for {params.colo_baseline_s} s")
        baseline = await _baseline(params)
        STDERR.log(
            f"colocate: {params.colo_rate}/s enqueued for {params.colo_steady_s} s, run at C={CONCURRENCY}"
        )
        steady = await _steady(scheduler, tracker, params)
    STDERR.log(f"colocate: drain {params.colo_n:,} at C={CONCURRENCY} with the probe")
    probe = LoopProbe()
    drain = await bench_drain(
        dsn, params, n=params.colo_n, concurrency=CONCURRENCY, probe=probe, dedicated=False
    )
    return {
        "probe_interval_ms": PROBE_INTERVAL_S * 1000,
        "baseline": baseline,
        "drain": _drain_window(params, drain, probe),
        "steady": steady,
        "ping": await _ping(dsn, params),
    }


def _drain_window(params: Params, drain: JsonObject, probe: LoopProbe) -> JsonObject:
    cost = drain.get("cost")
    return {
        "n": params.colo_n,
        "concurrency": CONCURRENCY,
        "jps": drain.get("jps"),
        "timed_out": bool(drain.get("timed_out")),
        "start_ms": drain.get("start_ms"),
        **probe.summary(),
        "db_cpu_us_per_job": cost.get("db_cpu_us_per_job") if isinstance(cost, dict) else None,
        "cpu_us_per_job": drain.get("cpu_us_per_job"),
    }


async def _ping(dsn: str, params: Params) -> JsonObject:
    """(d) /ping served on the loop and requested from another process: idle, then during a drain."""
    if not ping_available():
        return {"skipped": "starlette and uvicorn (the web extra) are not installed"}
    STDERR.log(f"colocate: drain {params.colo_n:,} at C={CONCURRENCY} with /ping at {PING_RATE}/s")
    probe = LoopProbe()
    async with served_ping() as client:
        idle_from = time.time()
        await anyio.sleep(params.colo_baseline_s)
        idle = (idle_from, time.time())
        drain = await bench_drain(
            dsn, params, n=params.colo_n, concurrency=CONCURRENCY, probe=probe, dedicated=False
        )
        await client.finish()
    return {
        **client.summary(probe.window),
        "idle": client.summary(idle),
        "lag": _drain_window(params, drain, probe),
    }


def _lag(phase: JsonObject, window: str) -> str:
    def f(key: str) -> str:
        value = get_num(phase, window, key)
        return "-" if value is None else f"{value:.2f}"

    return f"p50 {f('p50_ms')} / p99 {f('p99_ms')} / max {f('max_ms')} ms"


def colocate_rows(line: JsonObject) -> list[tuple[str, str, str]]:
    """The table's rows for the colocate phase, with the issue's targets for the drain."""
    phase = line.get("colocate")
    if not isinstance(phase, dict):
        return []
    p99, worst = get_num(phase, "drain", "p99_ms"), get_num(phase, "drain", "max_ms")
    met = p99 is not None and worst is not None and p99 <= TARGET_P99_MS and worst <= TARGET_MAX_MS
    b, d, s = (w if isinstance(w := phase.get(k), dict) else {} for k in ("baseline", "drain", "steady"))
    return [
        ("loop lag, idle", _lag(phase, "baseline"), f"{b.get('samples')} samples, no worker"),
        (
            "loop lag, drain",
            _lag(phase, "drain"),
            (
                f"target p99 ≤ {TARGET_P99_MS:g} / max ≤ {TARGET_MAX_MS:g} ms: "
                f"{'met' if met else 'NOT met'}; {get_num(d, 'jps') or 0:,.0f} jobs/s "
                f"({d.get('n')} at C={CONCURRENCY}); gen-2 GCs {d.get('gc2_count')} "
                f"(total {d.get('gc2_total_ms')}, max {d.get('gc2_max_ms')} ms), young GCs "
                f"{d.get('gc_young_count')} (total {d.get('gc_young_total_ms')}, max "
                f"{d.get('gc_young_max_ms')} ms); "
                f"start-up {d.get('start_ms')} ms"
            ),
        ),
        (
            "  of it: waiting for a CPU",
            f"p99 {d.get('runq_p99_ms', '-')} / max {d.get('runq_max_ms', '-')} ms",
            (
                f"the loop's own hold (lag − wait): p99 {d.get('held_p99_ms', '-')} / "
                f"max {d.get('held_max_ms', '-')} ms"
            ),
        ),
        _ping_row(phase),
        (
            "loop lag, steady",
            _lag(phase, "steady"),
            (
                f"{s.get('rate')}/s enqueued for {s.get('s')} s, run at C={CONCURRENCY}; "
                f"enqueue p50 {s.get('enqueue_p50_ms')} / p99 {s.get('enqueue_p99_ms')} ms"
            ),
        ),
    ]


def _ping_row(phase: JsonObject) -> tuple[str, str, str]:
    ping = phase.get("ping")
    p = ping if isinstance(ping, dict) else {}
    if "skipped" in p:
        return ("GET /ping, drain", "skipped", str(p["skipped"]))
    lag = p.get("lag")
    d = lag if isinstance(lag, dict) else {}
    idle = p.get("idle")
    i = idle if isinstance(idle, dict) else {}
    details = (
        f"{p.get('requests')} requests at {p.get('rate')}/s from another process, {p.get('failed')} failed; "
        f"idle p50 {i.get('p50_ms')} / p99 {i.get('p99_ms')} ms; "
        f"loop lag meanwhile p99 {d.get('p99_ms')} / max {d.get('max_ms')} ms; "
        f"{get_num(d, 'jps') or 0:,.0f} jobs/s"
    )
    return (
        "GET /ping, drain",
        f"p50 {p.get('p50_ms')} / p99 {p.get('p99_ms')} / max {p.get('max_ms')} ms",
        details,
    )
