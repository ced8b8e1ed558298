"""``make bench-compare`` and ``make bench-ci``: pgqueue against the raw asyncpg ceiling, in one run.

Absolute rates on shared machines drift by tens of percent between hours, so the only
figure that means something is a ratio taken in one session on one server. This script
runs, interleaved, ``RUNS`` passes (default 3) of

1. ``bench_raw.py`` from the peers directory (the pgqueue design in plain asyncpg);
2. raw's drain again, at C=10 and C=50, between the WAL, tuple and server-CPU counters
   (``_rawcost``: raw does not report them);
3. ``pgqueue bench`` (with ``--big`` when ``BENCH_BIG=1``);
4. ``bench_pgqueuer.py`` when pgqueuer imports in the peers' Python (never a dependency
   of ours: skipped with a note otherwise);

each system in its own ``bench_<system>`` database on the same server, and prints the
medians, the pgqueue/raw ratios, the issue's targets, and a markdown table for the README
(also written to ``.bench/compare-<stamp>.md`` next to the JSON lines and the log).

``--ci`` is the gross-regression check: a 5,000-job drain at C=10 only, against raw in the
same run, failing (exit 1) only when pgqueue drains at less than 0.5× raw.

Environment: ``RUNS``; ``BENCH_DSN`` (the server; each system's database name replaces
the DSN's); ``BENCH_PEERS`` (default ``../shared/bench/peers`` from the repository);
``BENCH_PY`` (Python for ``bench_raw.py``; default this one); ``PGQUEUER_PY`` (Python for
``bench_pgqueuer.py``; default ``BENCH_PY``); ``BENCH_BIG=1``;
``BENCH_UVLOOP=1`` (every system on uvloop); ``BENCH_CI_RUNS`` (default 3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ._report import JsonObject
from ._server import default_dsn, with_database
from ._summary import ci_verdict, markdown_report

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PEERS = REPO.parent / "shared" / "bench" / "peers"
OUT_DIR = REPO / ".bench"
TIMEOUT_S = 300.0  # per system and pass, as the peers' run_all.sh
# What the peers also measure, and the report compares; pgqueue's own phases (management,
# metrics, churn, limits…) are `make bench`'s.
COMPARED_PHASES = ("enqueue", "drain", "latency", "two_workers")
RAW_COST_CONCURRENCIES = (10, 50)  # the drains whose cost per job is compared with pgqueue's
BIG_TIMEOUT_S = 1800.0  # the pgqueue pass with the 1M-job drain
CI_N = 5000
CI_FLOOR = 0.5  # bench-ci fails below this pgqueue/raw drain ratio
CI_RAW_ENV = {
    "BENCH_N": str(CI_N),
    "BENCH_CONCURRENCY": "10",
    "BENCH_SINGLE_N": "100",
    "BENCH_LAT_N": "20",
}


@dataclass
class Session:
    """Where the passes run and where their output goes."""

    server: str
    peers: Path
    peers_py: str
    pgqueuer_py: str
    out: Path
    lines: list[JsonObject] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def log_path(self) -> Path:
        """Stderr of every subprocess, appended."""
        return self.out.with_suffix(".log")

    def run(self, system: str, command: list[str], *, env: dict[str, str], cwd: Path, timeout: float) -> None:
        """Run one benchmark process; keep its last stdout line (its JSON result)."""
        started = time.monotonic()
        sys.stderr.write(f"   {system:<9} ")
        sys.stderr.flush()
        with self.log_path().open("a", encoding="utf-8") as log:
            log.write(f"\n== {system}: {' '.join(command)}\n")
            log.flush()
            try:
                done = subprocess.run(  # noqa: S603 - our own interpreter and the peers' scripts
                    command,
                    env={**os.environ, **env},
                    cwd=cwd,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                    timeout=timeout,
                    check=False,
                )
                last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
                rc: int | str = done.returncode
            except subprocess.TimeoutExpired:
                last, rc = "", f"timeout after {timeout:.0f} s"
        took = time.monotonic() - started
        if rc == 0 and last.startswith("{"):
            line = json.loads(last)
            self.lines.append(line)
            sys.stderr.write(f"ok in {took:.0f} s\n")
        else:
            self.lines.append({"system": system, "error": f"exit {rc} (see {self.log_path()})"})
            sys.stderr.write(f"FAILED ({rc}; see {self.log_path()})\n")
        with self.out.open("a", encoding="utf-8") as f:
            f.write(json.dumps(self.lines[-1]) + "\n")

    def raw(self, extra_env: dict[str, str] | None = None) -> None:
        """One pass of ``bench_raw.py``."""
        dsn = with_database(self.server, "bench_raw")
        env = {"BENCH_DSN": dsn, "BENCH_DSN_RAW": dsn, **(extra_env or {})}
        self.run("raw", [self.peers_py, "bench_raw.py"], env=env, cwd=self.peers, timeout=TIMEOUT_S)

    def raw_cost(self, concurrency: int) -> None:
        """Raw's drain between the WAL, tuple and server-CPU counters, as long as pgqueue's."""
        dsn = with_database(self.server, "bench_raw")
        n = os.environ.get("BENCH_N", "20000")
        command = [sys.executable, "-m", "pgqueue.bench._rawcost", str(self.peers), dsn, n, str(concurrency)]
        self.run("raw_cost", command, env={}, cwd=REPO, timeout=TIMEOUT_S)

    def pgqueue(
        self, args: list[str], *, env: dict[str, str] | None = None, timeout: float = TIMEOUT_S
    ) -> None:
        """One pass of ``pgqueue bench``."""
        dsn = with_database(self.server, "bench_pgqueue")
        command = [sys.executable, "-m", "pgqueue.bench", "--dsn", dsn, "--no-progress", *args]
        self.run("pgqueue", command, env=env or {}, cwd=REPO, timeout=timeout)

    def pgqueuer(self) -> None:
        """One pass of ``bench_pgqueuer.py``."""
        dsn = with_database(self.server, "bench_pgqueuer")
        env = {"BENCH_DSN": dsn, "BENCH_DSN_PGQUEUER": dsn}
        self.run(
            "pgqueuer", [self.pgqueuer_py, "bench_pgqueuer.py"], env=env, cwd=self.peers, timeout=TIMEOUT_S
        )


def _importable(python: str, module: str) -> bool:
    probe = subprocess.run(  # noqa: S603 - a fixed probe in a known interpreter
        [python, "-c", f"import {module}"], capture_output=True, check=False, timeout=60
    )
    return probe.returncode == 0


def _session(kind: str) -> Session | None:
    peers = Path(os.environ.get("BENCH_PEERS", str(DEFAULT_PEERS))).resolve()
    if not (peers / "bench_raw.py").is_file():
        sys.stderr.write(f"no bench_raw.py in {peers}: set BENCH_PEERS to ../shared/bench/peers\n")
        return None
    server = os.environ.get("BENCH_DSN") or default_dsn("bench_pgqueue")
    OUT_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = OUT_DIR / f"{kind}-{stamp}.jsonl"
    peers_py = os.environ.get("BENCH_PY", sys.executable)
    pgqueuer_py = os.environ.get("PGQUEUER_PY", peers_py)
    return Session(server=server, peers=peers, peers_py=peers_py, pgqueuer_py=pgqueuer_py, out=out)


def compare() -> int:
    """``make bench-compare``: RUNS interleaved passes, then medians, ratios and the README table."""
    session = _session("compare")
    if session is None:
        return 2
    runs = int(os.environ.get("RUNS", "3"))
    big = os.environ.get("BENCH_BIG") == "1"
    with_pgqueuer = _importable(session.pgqueuer_py, "pgqueuer")
    if not with_pgqueuer:
        session.notes.append(
            f"pgqueuer is not importable in {session.pgqueuer_py}: skipped "
            "(install it in a separate venv with asyncpg and psycopg, and set PGQUEUER_PY to its python)"
        )
    sys.stderr.write(f"results -> {session.out}  (stderr of every run -> {session.log_path()})\n")
    for i in range(1, runs + 1):
        sys.stderr.write(f"== pass {i}/{runs}\n")
        session.raw()
        for c in RAW_COST_CONCURRENCIES:
            session.raw_cost(c)
        phases = ["--phases", ",".join(COMPARED_PHASES)]
        if big:
            session.pgqueue([*phases, "--big"], timeout=BIG_TIMEOUT_S)
        else:
            session.pgqueue(phases)
        if with_pgqueuer:
            session.pgqueuer()
    report = markdown_report(session.lines, notes=session.notes, big=big)
    session.out.with_suffix(".md").write_text(report, encoding="utf-8")
    sys.stdout.write(report)
    sys.stderr.write(f"\nmarkdown -> {session.out.with_suffix('.md')}\n")
    return 0


def ci() -> int:
    """``make bench-ci``: fail only on a gross drain regression against raw in the same run."""
    session = _session("ci")
    if session is None:
        sys.stderr.write("bench-ci skipped: the raw ceiling is needed for a same-run ratio\n")
        return 0
    runs = int(os.environ.get("BENCH_CI_RUNS", "3"))
    for i in range(1, runs + 1):
        sys.stderr.write(f"== pass {i}/{runs}\n")
        session.raw(CI_RAW_ENV)
        args = ["--jobs", str(CI_N), "--concurrency", "10", "--phases", "drain"]
        session.pgqueue(args, env={"BENCH_BIG": "0"})  # drain only, whatever the caller's environment says
    ok, message = ci_verdict(session.lines, floor=CI_FLOOR)
    sys.stdout.write(message + "\n")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m pgqueue.bench.compare [--ci]``."""
    args = sys.argv[1:] if argv is None else argv
    return ci() if "--ci" in args else compare()


if __name__ == "__main__":
    sys.exit(main())
