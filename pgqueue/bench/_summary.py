"""Medians, pgqueue/raw ratios, the issue's targets, and the README's markdown table.

Ratios against a peer are paired: the median over passes of (pgqueue in pass i) / (peer in
pass i). Each pass ran every system back to back on one server, so drift between hours and
a disturbed pass (a checkpoint behind one system's run) cancel out of its ratio, where a
ratio of medians can pair a good pass of one system with a bad one of the other. The
per-system columns stay plain medians.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from ._report import JsonObject, get_num

__all__ = ["ci_verdict", "markdown_report", "medians"]

SYSTEMS = ("raw", "pgqueue", "pgqueuer")


@dataclass(frozen=True, slots=True)
class Metric:
    """One column: where it sits in a system's JSON line, and which way is better."""

    label: str
    path: tuple[str, ...]
    higher_is_better: bool = True


RATE_METRICS = (
    Metric("single enqueue/s", ("enqueue_single", "jps")),
    Metric("bulk enqueue/s", ("enqueue_batch", "jps")),
    Metric("drain C=10/s", ("drain_c10", "jps")),
    Metric("drain C=50/s", ("drain_c50", "jps")),
    Metric("latency p50 ms", ("latency", "p50_ms"), higher_is_better=False),
    Metric("p95 ms", ("latency", "p95_ms"), higher_is_better=False),
    Metric("p99 ms", ("latency", "p99_ms"), higher_is_better=False),
)
COST_METRICS = (
    Metric("WAL bytes/job", ("cost", "wal_bytes_per_job"), higher_is_better=False),
    Metric("WAL records/job", ("cost", "wal_records_per_job"), higher_is_better=False),
    Metric("dead tuples/job", ("cost", "dead_tuples_per_job"), higher_is_better=False),
    Metric("DB CPU µs/job", ("cost", "db_cpu_us_per_job"), higher_is_better=False),
    Metric("its backends µs/job", ("cost", "db_backends_cpu_us_per_job"), higher_is_better=False),
)
COST_CONCURRENCIES = (10, 50)  # raw's cost drains (compare.RAW_COST_CONCURRENCIES)


def _by_system(lines: list[JsonObject]) -> dict[str, list[JsonObject]]:
    out: dict[str, list[JsonObject]] = {}
    for line in lines:
        if "error" not in line:
            out.setdefault(str(line.get("system")), []).append(line)
    return out


def medians(lines: list[JsonObject], path: tuple[str, ...]) -> float | None:
    """Median of one value over the lines that have it."""
    values = [v for v in (get_num(line, *path) for line in lines) if v is not None]
    return statistics.median(values) if values else None


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "n/a"
    text = f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}"  # noqa: PLR2004 - about three significant digits
    return text + unit


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def paired_ratio(ours: list[JsonObject], peer: list[JsonObject], path: tuple[str, ...]) -> float | None:
    """Median of per-pass ratios (passes in order); the ratio of medians if they do not pair up."""
    if len(ours) != len(peer):
        return _ratio(medians(ours, path), medians(peer, path))
    pairs = [(get_num(a, *path), get_num(b, *path)) for a, b in zip(ours, peer, strict=True)]
    ratios = [a / b for a, b in pairs if a is not None and b]
    return statistics.median(ratios) if ratios else None


def _rates_table(runs: dict[str, list[JsonObject]]) -> list[str]:
    head = "| system | runs | " + " | ".join(m.label for m in RATE_METRICS) + " |"
    rows = [head, "|---|---|" + "---|" * len(RATE_METRICS)]
    for system in (s for s in SYSTEMS if s in runs):
        cells = [_fmt(medians(runs[system], m.path)) for m in RATE_METRICS]
        rows.append(f"| {system} | {len(runs[system])} | " + " | ".join(cells) + " |")
    for peer in ("raw", "pgqueuer"):
        if "pgqueue" in runs and peer in runs:
            cells = [_fmt(paired_ratio(runs["pgqueue"], runs[peer], m.path), "×") for m in RATE_METRICS]
            rows.append(f"| **pgqueue / {peer}** | | " + " | ".join(cells) + " |")
    return rows


def cost_drains(
    runs: dict[str, list[JsonObject]], concurrency: int
) -> tuple[list[JsonObject], list[JsonObject]]:
    """The pgqueue drains at ``concurrency`` and raw's cost drains at the same, pass by pass.

    A raw_cost line without a concurrency is raw's C=10 drain (the only one it once ran).
    """
    drains = (line.get(f"drain_c{concurrency}") for line in runs.get("pgqueue", []))
    raw = [line for line in runs.get("raw_cost", []) if line.get("concurrency", 10) == concurrency]
    return [d for d in drains if isinstance(d, dict)], raw


def _cost_table(runs: dict[str, list[JsonObject]]) -> list[str]:
    rows = [
        "| drain of 20,000 | " + " | ".join(m.label for m in COST_METRICS) + " |",
        "|---|" + "---|" * len(COST_METRICS),
    ]
    for c in COST_CONCURRENCIES:
        pg, raw = cost_drains(runs, c)
        if not pg and not raw:
            continue
        rows += [
            f"| raw C={c} | " + " | ".join(_fmt(medians(raw, m.path)) for m in COST_METRICS) + " |",
            f"| pgqueue C={c} | " + " | ".join(_fmt(medians(pg, m.path)) for m in COST_METRICS) + " |",
            f"| **pgqueue / raw C={c}** | "
            + " | ".join(_fmt(paired_ratio(pg, raw, m.path), "×") for m in COST_METRICS)
            + " |",
        ]
    return rows


@dataclass(frozen=True, slots=True)
class Target:
    """One of the issue's targets and how it is checked."""

    label: str
    measure: Callable[[dict[str, list[JsonObject]]], float | None]
    goal: float
    at_least: bool
    unit: str = "×"


def _vs_raw(path: tuple[str, ...]) -> Callable[[dict[str, list[JsonObject]]], float | None]:
    return lambda runs: paired_ratio(runs.get("pgqueue", []), runs.get("raw", []), path)


def _pg(path: tuple[str, ...]) -> Callable[[dict[str, list[JsonObject]]], float | None]:
    return lambda runs: medians(runs.get("pgqueue", []), path)


def _cost_vs_raw(
    concurrency: int, key: str, *, paired: bool = True
) -> Callable[[dict[str, list[JsonObject]]], float | None]:
    """The cost per job of pgqueue over raw's, in the drains at ``concurrency``."""

    def measure(runs: dict[str, list[JsonObject]]) -> float | None:
        pg, raw = cost_drains(runs, concurrency)
        path = ("cost", key)
        return paired_ratio(pg, raw, path) if paired else _ratio(medians(pg, path), medians(raw, path))

    return measure


TARGETS = (
    Target("drain C=10 ≥ 0.8× raw", _vs_raw(("drain_c10", "jps")), 0.8, at_least=True),
    Target("drain C=50 ≥ 0.8× raw", _vs_raw(("drain_c50", "jps")), 0.8, at_least=True),
    Target("bulk enqueue ≥ 0.8× raw", _vs_raw(("enqueue_batch", "jps")), 0.8, at_least=True),
    Target("single enqueue ≥ 0.9× raw", _vs_raw(("enqueue_single", "jps")), 0.9, at_least=True),
    Target("latency p50 ≤ 1.3× raw", _vs_raw(("latency", "p50_ms")), 1.3, at_least=False),
    Target("latency p99 ≤ 5 ms", _pg(("latency", "p99_ms")), 5.0, at_least=False, unit=" ms"),
    Target("1M-backlog drain ≥ 0.9× the 20k drain", _pg(("big_vs_20k",)), 0.9, at_least=True),
    Target(
        "worker RSS growth < 50 MB over 1M jobs",
        _pg(("big_drain", "rss", "growth_mb")),
        50,
        at_least=False,
        unit=" MB",
    ),
    Target(
        "WAL bytes/job ≤ 1.5× raw", _cost_vs_raw(10, "wal_bytes_per_job", paired=False), 1.5, at_least=False
    ),
)
TARGETS_16 = (
    Target("DB CPU per job ≤ 0.85× raw, C=10", _cost_vs_raw(10, "db_cpu_us_per_job"), 0.85, at_least=False),
    Target("DB CPU per job ≤ 0.85× raw, C=50", _cost_vs_raw(50, "db_cpu_us_per_job"), 0.85, at_least=False),
    Target(
        "(its backends only) ≤ 0.85× raw, C=10",
        _cost_vs_raw(10, "db_backends_cpu_us_per_job"),
        0.85,
        at_least=False,
    ),
    Target(
        "(its backends only) ≤ 0.85× raw, C=50",
        _cost_vs_raw(50, "db_backends_cpu_us_per_job"),
        0.85,
        at_least=False,
    ),
    Target("latency p50 ≤ 1.1× raw", _vs_raw(("latency", "p50_ms")), 1.1, at_least=False),
)
"""Issue 16's targets that one ``make bench-compare`` measures; its loop-lag and I/O-bound
targets are ``make bench``'s (phases ``colocate`` and ``iobound``)."""


def _targets_table(
    runs: dict[str, list[JsonObject]], targets: tuple[Target, ...], *, issue: int, big: bool
) -> list[str]:
    rows = [f"| target (issue {issue}) | measured | met |", "|---|---|---|"]
    for t in targets:
        value = t.measure(runs)
        if value is None:
            why = "not run (BENCH_BIG=1)" if not big and ("1M" in t.label) else "n/a"
            rows.append(f"| {t.label} | {why} | - |")
            continue
        met = value >= t.goal if t.at_least else value <= t.goal
        rows.append(f"| {t.label} | {_fmt(value, t.unit)} | {'yes' if met else '**no**'} |")
    return rows


def _extras(runs: dict[str, list[JsonObject]]) -> list[str]:
    pg = runs.get("pgqueue", [])
    lines = []
    two, two_ratio = medians(pg, ("two_workers", "jps")), medians(pg, ("two_workers_vs_one",))
    if two is not None:
        lines.append(
            f"- two worker processes (C=10 each): {_fmt(two)} jobs/s, {_fmt(two_ratio, '×')} one worker"
        )
    big = medians(pg, ("big_drain", "jps"))
    if big is not None:
        lines.append(
            f"- 1M-job backlog drain: {_fmt(big)} jobs/s ({_fmt(medians(pg, ('big_vs_20k',)), '×')} the 20k "
            f"drain); worker RSS +{_fmt(medians(pg, ('big_drain', 'rss', 'growth_mb')), ' MB')}"
        )
    else:
        growth = medians(pg, ("drain_c10", "rss", "growth_mb"))
        lines.append(
            f"- worker RSS over the 20k drain: +{_fmt(growth, ' MB')} (the 1M run needs BENCH_BIG=1)"
        )
    for system, group in runs.items():
        if system in SYSTEMS:
            per_run = " | ".join(
                f"{_fmt(get_num(x, 'drain_c10', 'jps'))}/{_fmt(get_num(x, 'drain_c50', 'jps'))}; "
                f"{_fmt(get_num(x, 'latency', 'p50_ms'))}"
                for x in group
            )
            lines.append(f"- per pass, {system} (drain C=10/C=50 jobs/s; p50 ms): {per_run}")
    return lines


def _setup(runs: dict[str, list[JsonObject]]) -> str:
    line = runs.get("pgqueue", [{}])[0]
    server, machine = line.get("server"), line.get("machine")
    s = server if isinstance(server, dict) else {}
    m = machine if isinstance(machine, dict) else {}
    return (
        f"Setup: {m.get('nproc', '?')} CPUs (nproc), {m.get('ram_gb', '?')} GB RAM; PostgreSQL "
        f"{s.get('server_version', '?')} with fsync={s.get('fsync', '?')}, synchronous_commit="
        f"{s.get('synchronous_commit', '?')}, shared_buffers={s.get('shared_buffers_mb', '?')} MB; "
        f"Python {line.get('python', '?')}, {line.get('loop', '?')} loop; "
        f"pgqueue {line.get('version', '?')}; "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}."
    )


def markdown_report(lines: list[JsonObject], *, notes: list[str], big: bool) -> str:
    """The whole comparison as markdown, ready for the README's Performance section."""
    runs = _by_system(lines)
    errors = [f"- {line.get('system')}: {line.get('error')}" for line in lines if "error" in line]
    parts = [
        "### Performance (medians of one `make bench-compare` session)",
        "",
        *_rates_table(runs),
        "",
        *_cost_table(runs),
        "",
        *_targets_table(runs, TARGETS, issue=5, big=big),
        "",
        *_targets_table(runs, TARGETS_16, issue=16, big=big),
        "",
        *_extras(runs),
        "",
        _setup(runs),
        (
            "Reproduce: `make bench-compare` (`RUNS=3` passes, interleaved; `BENCH_BIG=1` adds the "
            "1,000,000-job drain). Only same-run ratios are comparable across machines."
        ),
    ]
    if notes or errors:
        parts += ["", "Notes:", *(f"- {n}" for n in notes), *errors]
    return "\n".join(parts) + "\n"


def ci_verdict(lines: list[JsonObject], *, floor: float) -> tuple[bool, str]:
    """(passed, message): fails only when pgqueue's median drain < ``floor`` × raw's."""
    runs = _by_system(lines)
    pg = medians(runs.get("pgqueue", []), ("drain_c10", "jps"))
    raw = medians(runs.get("raw", []), ("drain_c10", "jps"))
    if pg is None:
        return False, "bench-ci FAILED: the pgqueue benchmark did not produce a drain rate"
    if raw is None:
        return True, "bench-ci: the raw ceiling did not run; no same-run ratio, not failing"
    ratio = pg / raw
    verdict = "ok" if ratio >= floor else "FAILED (gross regression)"
    return ratio >= floor, (
        f"bench-ci {verdict}: pgqueue drain {pg:,.0f} jobs/s vs raw {raw:,.0f} jobs/s = {ratio:.2f}× "
        f"(floor {floor}×, medians of {len(runs.get('pgqueue', []))} passes)"
    )
