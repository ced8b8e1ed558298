"""Smoke tests of the benchmark: every workload runs and reports the expected keys.

Tiny sizes, no timing assertions: timings belong to ``make bench``, never to the suite.
Each test works in its own ``bench_test_<random>`` database on the test server, dropped
afterwards; without the right to create databases the tests are skipped.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from pgqueue.bench import DEFAULT_PHASES
from pgqueue.bench._drain import bench_drain
from pgqueue.bench._harness import Params
from pgqueue.bench._server import drop_database, recreate_database, with_database
from pgqueue.bench._summary import ci_verdict, markdown_report
from tests._support import ROOT_DIR

PEERS = Path(ROOT_DIR).parent / "shared" / "bench" / "peers"
DRAIN_KEYS = {"n", "jps", "persisted_s", "done_handlers", "handlers_jps", "startup_s", "claims", "flushes"}
COST_KEYS = {
    "wal_bytes_per_job",
    "wal_lsn_bytes_per_job",
    "dead_tuples_per_job",
    "tup_del_per_job",
    "db_cpu_us_per_job",  # None unless the server runs on this machine
    "db_backends_cpu_us_per_job",
}
LAG_KEYS = {
    "samples",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "gc2_count",
    "gc2_total_ms",
    "gc2_max_ms",
    "gc_young_count",
    "gc_young_total_ms",
    "gc_young_max_ms",
}
TINY = Params(n=200, single_n=20, lat_n=10, lat_spacing_s=0.005, lat_warmup=2, big_n=300, progress=False)


@pytest.fixture
async def bench_dsn(dsn: str) -> AsyncIterator[str]:
    """A DSN naming a throw-away bench_test_<random> database on the test server."""
    conn = await asyncpg.connect(dsn)
    try:
        may_create = await conn.fetchval(
            "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user"
        )
    finally:
        await conn.close()
    if not may_create:
        pytest.skip("the test server's user cannot create databases")
    target = with_database(dsn, f"bench_test_{secrets.token_hex(4)}")
    try:
        yield target
    finally:
        await drop_database(target)


@pytest.mark.pg
async def test_drain_reports_rate_cost_and_rss(bench_dsn: str) -> None:
    out = await bench_drain(bench_dsn, TINY, n=TINY.n, concurrency=10)
    assert out.keys() >= DRAIN_KEYS
    assert "timed_out" not in out
    assert out["done_handlers"] == TINY.n
    cost, rss = out["cost"], out["rss"]
    assert isinstance(cost, dict)
    assert cost.keys() >= COST_KEYS
    assert isinstance(rss, dict)
    assert {"before_mb", "after_mb", "growth_mb", "peak_mb"} <= rss.keys()


@pytest.mark.pg
async def test_big_drain_reports_rate_per_tenth(bench_dsn: str) -> None:
    out = await bench_drain(bench_dsn, TINY, n=TINY.big_n, concurrency=10, big=True)
    assert out.keys() >= DRAIN_KEYS
    tenths = out["tenths_jps"]
    assert isinstance(tenths, list)
    assert len(tenths) == 10


@pytest.mark.pg
async def test_every_phase_through_the_command(bench_dsn: str) -> None:
    """``python -m pgqueue.bench`` with all phases prints one JSON line with every key."""
    env = {**os.environ, "BENCH_SINGLE_N": "20", "BENCH_LAT_N": "10", "BENCH_LAT_SPACING_MS": "5"}
    env |= {"BENCH_MANAGE_RUNS": "2000", "BENCH_MANAGE_LIVE": "600", "BENCH_MEMORY_N": "300"}
    env |= {"BENCH_CHURN_N": "3000", "BENCH_CHURN_BACKLOG": "500", "BENCH_PULL_REPEATS": "1"}
    env |= {"BENCH_COLO_N": "300", "BENCH_COLO_STEADY_S": "0.5", "BENCH_COLO_BASELINE_S": "0.2"}
    env |= {"BENCH_IO_N_10MS": "400", "BENCH_IO_N_1MS": "400"}
    command = [sys.executable, "-m", "pgqueue.bench", "--dsn", bench_dsn, "-n", "200", "-c", "10,20"]
    command += [
        "--big",
        "--big-jobs",
        "300",
        "--no-progress",
    ]
    with anyio.fail_after(300):  # a hang guard: every phase, small, takes about a minute here
        done = await anyio.run_process(command, env=env, cwd=ROOT_DIR, check=False)
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().strip().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    expected = {"enqueue_single", "enqueue_batch", "drain_c10", "drain_c20", "latency", "two_workers"}
    assert (
        expected | {"big_drain", "big_vs_20k", "two_workers_vs_one", "rss", "server", "machine"}
        <= line.keys()
    )
    assert {"jps", "n", "s"} <= line["enqueue_single"].keys()
    assert {"p50_ms", "p95_ms", "p99_ms", "seen"} <= line["latency"].keys()
    assert line["latency"]["seen"] == 10
    two = line["two_workers"]
    assert {"jps", "handled_here", "handled_child"} <= two.keys()
    assert two["handled_here"] + two["handled_child"] >= 200
    assert line["rss"]["phase"] == "big_drain"
    assert line["phases"] == [*DEFAULT_PHASES, "big"]  # no --phases: every default phase
    for shape in ("unique", "depends_on", "awaited"):
        assert line[f"{shape}_drain"]["n"] == 200
        assert isinstance(line[f"{shape}_vs_plain"], float)
    # Only the jobs somebody waits for announce their end.
    assert line["drain_c10"]["end_notifications"] == 0
    assert line["depends_on_drain"]["end_notifications"] == 0
    assert line["awaited_drain"]["end_notifications"] == 200
    memory = line["memory"]
    assert (memory["memory"]["n"], memory["postgres"]["n"], memory["memory_worker"]["n"]) == (300, 300, 300)
    assert isinstance(memory["memory_vs_postgres"], float)
    manage = line["manage"]
    assert (manage["runs"], manage["live"]) == (2000, 600)
    for call in ("get_job", "list_jobs", "list_jobs_failed", "stats"):
        assert {"p50_ms", "p99_ms"} <= manage[call].keys(), call
    churn = line["churn"]
    assert (churn["jobs"], churn["backlog"]) == (3000, 500)
    assert churn["claim_scans"]  # on 500 queued jobs a sequential scan may be the cheaper plan
    assert churn["within_bound"] is True
    pull = line["pull"]
    assert (pull["repeats"], pull["done"]) == (1, [200])  # the pull consumer drained every job
    assert isinstance(pull["pull_vs_worker"], float)
    _check_colocate_and_iobound(line)
    assert "phase" in done.stderr.decode()  # the table


def _check_colocate_and_iobound(line: dict[str, Any]) -> None:
    colocate = line["colocate"]
    for window in ("baseline", "drain", "steady"):
        assert colocate[window].keys() >= LAG_KEYS, window
        assert colocate[window]["samples"] > 0, window
    assert (colocate["drain"]["n"], colocate["drain"]["timed_out"]) == (300, False)
    steady = colocate["steady"]
    assert steady["enqueued"] == steady["ran"] == 100  # 200/s for 0.5 s, every job run
    assert {"enqueue_p50_ms", "enqueue_p99_ms", "enqueue_max_ms"} <= steady.keys()
    ping = colocate["ping"]
    if "skipped" not in ping:
        assert {"requests", "failed", "p50_ms", "p99_ms", "max_ms", "idle", "lag"} <= ping.keys()
        assert ping["idle"]["requests"] > 0
    iobound = line["iobound"]
    for key in ("w10ms_c200", "w1ms_c50"):
        case = iobound[key]
        assert case["n"] == 400
        assert not case["timed_out"]
        assert isinstance(case["fraction"], float)
        assert isinstance(case["steady_fraction"], float)  # the 40th and the 360th job ended
        assert case["loop_ceiling"] > 0  # the loop alone completed sleeps
        assert case["of_ceiling"] == pytest.approx(case["fraction"] / case["loop_ceiling"], rel=0.01)
    assert (iobound["w10ms_c200"]["limit_jps"], iobound["w1ms_c50"]["limit_jps"]) == (20_000, 50_000)


@pytest.mark.pg
async def test_raw_cost_from_the_peers(bench_dsn: str) -> None:
    if not (PEERS / "bench_raw.py").is_file():
        pytest.skip(f"no peers directory at {PEERS}")
    command = [sys.executable, "-m", "pgqueue.bench._rawcost", str(PEERS), bench_dsn, "200", "10"]
    with anyio.fail_after(120):
        done = await anyio.run_process(command, cwd=ROOT_DIR, check=False)
    assert done.returncode == 0, done.stderr.decode()
    out = json.loads(done.stdout)
    assert out["cost"].keys() >= COST_KEYS
    assert "jps" in out


async def test_refuses_a_database_not_named_bench() -> None:
    with pytest.raises(SystemExit, match="must start with 'bench_'"):
        await recreate_database("postgresql://nobody@127.0.0.1:1/not_bench_xyz")


def _line(system: str, drain: float, **extra: object) -> dict[str, object]:
    return {
        "system": system,
        "enqueue_single": {"jps": 1000.0},
        "enqueue_batch": {"jps": 50000.0},
        "drain_c10": {"jps": drain, "cost": {"wal_bytes_per_job": 900.0}},
        "drain_c50": {"jps": drain},
        "latency": {"p50_ms": 2.0, "p95_ms": 3.0, "p99_ms": 4.0},
        **extra,
    }


def test_summary_has_ratios_and_targets() -> None:
    lines: list[dict[str, object]] = [
        _line("raw", 40000.0),
        {"system": "raw_cost", "cost": {"wal_bytes_per_job": 1000.0}},
        _line("pgqueue", 30000.0),
        {"system": "pgqueuer", "error": "exit 1"},
    ]
    report = markdown_report(lines, notes=["a note"], big=False)
    assert "| **pgqueue / raw** |" in report
    assert "0.75×" in report
    assert "drain C=10 ≥ 0.8× raw | 0.75× | **no** |" in report
    assert "not run (BENCH_BIG=1)" in report
    assert "a note" in report
    assert "pgqueuer: exit 1" in report


def test_summary_compares_database_cpu_per_job_with_raw_at_each_concurrency() -> None:
    def cost(cpu: float) -> dict[str, object]:
        return {"cost": {"db_cpu_us_per_job": cpu, "db_backends_cpu_us_per_job": cpu / 2}}

    pgqueue = _line("pgqueue", 30000.0)
    pgqueue["drain_c10"] = {"jps": 30000.0, **cost(16.0)}
    pgqueue["drain_c50"] = {"jps": 30000.0, **cost(18.0)}
    lines: list[dict[str, object]] = [
        _line("raw", 40000.0),
        {"system": "raw_cost", "concurrency": 10, **cost(20.0)},
        {"system": "raw_cost", "concurrency": 50, **cost(20.0)},
        pgqueue,
    ]
    report = markdown_report(lines, notes=[], big=False)
    assert "| target (issue 16) | measured | met |" in report
    assert "| DB CPU per job ≤ 0.85× raw, C=10 | 0.80× | yes |" in report
    assert "| DB CPU per job ≤ 0.85× raw, C=50 | 0.90× | **no** |" in report
    assert "| latency p50 ≤ 1.1× raw | 1.00× | yes |" in report
    assert "| **pgqueue / raw C=50** |" in report


def test_ci_verdict_fails_only_below_the_floor() -> None:
    ok, _ = ci_verdict([_line("raw", 40000.0), _line("pgqueue", 21000.0)], floor=0.5)
    assert ok
    ok, message = ci_verdict([_line("raw", 40000.0), _line("pgqueue", 19000.0)], floor=0.5)
    assert not ok
    assert "gross regression" in message
    ok, _ = ci_verdict([_line("raw", 40000.0), {"system": "pgqueue", "error": "exit 1"}], floor=0.5)
    assert not ok
