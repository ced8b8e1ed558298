"""Output: the run as one JSON line on stdout, and a table for people on stderr.

Stdout carries only the JSON line, so ``pgqueue bench > run.jsonl`` and the compare
script can read it; everything for people (table, progress bars) goes to stderr.
"""

from __future__ import annotations

import json
import math
import sys

from rich.console import Console
from rich.table import Table

__all__ = ["JsonObject", "emit", "get_num", "render_table"]

JsonObject = dict[str, object]


def get_num(obj: object, *path: str) -> float | None:
    """``obj[path[0]][path[1]]...`` as a float, or None when missing or not a number."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    if isinstance(obj, bool) or not isinstance(obj, int | float):
        return None
    return float(obj)


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None or math.isnan(x):
        return "-"
    text = f"{x:,.0f}" if abs(x) >= 100 or x.is_integer() else f"{x:.2f}"  # noqa: PLR2004 - about three significant digits
    return f"{text}{unit}"


def _drain_rows(line: JsonObject, key: str) -> list[tuple[str, str, str]]:
    def f(*path: str) -> str:
        return _fmt(get_num(line, key, *path))

    timed_out = "TIMED OUT; " if get_num(line, key, "timed_out") else ""
    return [
        (
            key,
            f"{f('jps')} jobs/s",
            (
                f"{timed_out}handlers {f('handlers_jps')}/s, start {f('startup_s')} s, "
                f"claims {f('claims')}, flushes {f('flushes')}, end notifications {f('end_notifications')}"
            ),
        ),
        (
            f"  {key} cost",
            f"{f('cost', 'wal_bytes_per_job')} WAL B/job",
            (
                f"dead tuples {f('cost', 'dead_tuples_per_job')}/job, WAL records "
                f"{f('cost', 'wal_records_per_job')}/job, FPI {f('cost', 'wal_fpi_per_job')}/job, "
                f"DB CPU {f('cost', 'db_cpu_us_per_job')} µs/job"
            ),
        ),
    ]


def _rows(line: JsonObject) -> list[tuple[str, str, str]]:
    def f(*path: str) -> str:
        return _fmt(get_num(line, *path))

    rows: list[tuple[str, str, str]] = [
        (key, f"{f(key, 'jps')} jobs/s", f"{f(key, 'n')} jobs")
        for key in ("enqueue_single", "enqueue_batch")
        if key in line
    ]
    for key in [k for k in line if k.startswith("drain_c")]:
        rows += _drain_rows(line, key)
    if "latency" in line:
        details = (
            f"p95 {f('latency', 'p95_ms')}, p99 {f('latency', 'p99_ms')}, max {f('latency', 'max_ms')} ms"
        )
        rows.append(("latency", f"p50 {f('latency', 'p50_ms')} ms", details))
    if "two_workers" in line:
        details = (
            f"{f('two_workers_vs_one')}× one worker; jobs run here {f('two_workers', 'handled_here')}, "
            f"in the child {f('two_workers', 'handled_child')}"
        )
        rows.append(("two_workers", f"{f('two_workers', 'jps')} jobs/s", details))
    rows += _feature_rows(line)
    from ._metrics import metrics_rows  # noqa: PLC0415 - _metrics reads this module's helpers

    rows += metrics_rows(line)
    from ._limits import limits_rows  # noqa: PLC0415 - _limits reads this module's helpers

    rows += limits_rows(line)
    from ._pull import pull_rows  # noqa: PLC0415 - _pull reads this module's helpers

    rows += pull_rows(line)
    from ._colocate import colocate_rows  # noqa: PLC0415 - _colocate reads this module's helpers
    from ._iobound import iobound_rows  # noqa: PLC0415 - _iobound reads this module's helpers

    rows += colocate_rows(line) + iobound_rows(line)
    if "big_drain" in line:
        big = _drain_rows(line, "big_drain")
        big[0] = (big[0][0], big[0][1], f"{f('big_vs_20k')}× the small drain; {big[0][2]}")
        rows += big
    if "rss" in line:
        rss = line["rss"]
        phase = rss.get("phase") if isinstance(rss, dict) else "?"
        details = f"{f('rss', 'before_mb')} → {f('rss', 'after_mb')} MB over {phase}"
        rows.append(("worker RSS", f"+{f('rss', 'growth_mb')} MB", details))
    return rows


def _feature_rows(line: JsonObject) -> list[tuple[str, str, str]]:
    """The drains of jobs that use a feature, against the plain drain; the management timings."""

    def f(*path: str) -> str:
        return _fmt(get_num(line, *path))

    rows: list[tuple[str, str, str]] = []
    for shape in ("unique", "depends_on", "awaited"):
        key = f"{shape}_drain"
        if key in line:
            details = f"{f(f'{shape}_vs_plain')}× plain; end notifications {f(key, 'end_notifications')}"
            rows.append((f"drain ({shape})", f"{f(key, 'jps')} jobs/s", details))
    if "memory" in line:
        details = (
            f"{f('memory', 'memory_vs_postgres')}× the same drain on PostgreSQL "
            f"({f('memory', 'postgres', 'jps')} jobs/s); "
            f"a worker in memory: {f('memory', 'memory_worker', 'jps')} jobs/s"
        )
        rows.append(("testing.drain (memory)", f"{f('memory', 'memory', 'jps')} jobs/s", details))
    if "manage" in line:
        for op in (
            "get_job",
            "list_jobs",
            "list_jobs_failed",
            "stats",
            "page_overview",
            "page_jobs",
            "api_jobs",
        ):
            if get_num(line, "manage", op, "p99_ms") is None:  # no web extra: no dashboard timings
                continue
            details = f"{f('manage', 'runs')} runs logged, {f('manage', 'live')} live jobs"
            rows.append(
                (op, f"p50 {f('manage', op, 'p50_ms')} / p99 {f('manage', op, 'p99_ms')} ms", details)
            )
    churn = line.get("churn")
    if isinstance(churn, dict):
        details = (
            f"after {f('churn', 'jobs')} jobs, {f('churn', 'backlog')} queued "
            f"(bound {f('churn', 'bound_mb')} MB); "
            f"claim {'on its indexes' if churn.get('claim_uses_indexes') else 'NOT on its indexes'}"
        )
        rows.append(("hot table + indexes", f"{f('churn', 'queued', 'total_mb')} MB", details))
    return rows


def render_table(line: JsonObject) -> Table:
    """The readable summary of one run."""
    server = line.get("server")
    version = server.get("server_version", "?") if isinstance(server, dict) else "?"
    table = Table(
        title=f"pgqueue {line.get('version')} bench — PostgreSQL {version}, loop {line.get('loop')}"
    )
    for column in ("phase", "result", "details"):
        table.add_column(column)
    for row in _rows(line):
        table.add_row(*row)
    return table


def emit(line: JsonObject) -> None:
    """Print the JSON line (stdout) and the table (stderr)."""
    Console(stderr=True).print(render_table(line))
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
