"""The raw ceiling's WAL bytes, dead tuples and server CPU per job, measured exactly as pgqueue's.

``bench_raw.py`` reports rates only. For the targets "WAL bytes per job within 1.5× raw"
and "database CPU per job at most 0.85× raw" the same counters must be read around raw's
drain, so this module imports raw's own code from the peers directory (its schema, bulk
enqueue and ``RawWorker``; nothing is re-implemented) and drains ``n`` jobs with it
between two snapshots, as :func:`~pgqueue.bench._drain.bench_drain` does for pgqueue.

As there (and in the peers' ``measure_drain``), the database is polled only once raw's
handlers have all run (raw's handler counts into the peers' ``TRACK``): a count of both
tables every 10 ms during the whole drain would add its own CPU to raw's figure.

    python -m pgqueue.bench._rawcost PEERS_DIR DSN [N] [CONCURRENCY]

prints one JSON line: ``{"system": "raw_cost", "n": ..., "jps": ..., "cost": {...}}``.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from types import ModuleType

import anyio
import asyncpg

from ._dbcpu import database_backends_cpu_s
from ._harness import vacuum_and_checkpoint
from ._server import database_name
from ._stats import cost_per_job, snapshot

__all__ = ["main", "raw_cost"]

POLL_S = 0.01
TIMEOUT_S = 120.0
ENQ_BATCH = 1000


def load_raw(peers: str, dsn: str) -> ModuleType:
    """Import ``bench_raw`` from the peers directory, pointed at ``dsn``.

    ``bench_raw`` reads its DSN from the environment when it is imported.
    """
    if not database_name(dsn).startswith("bench_"):
        raise SystemExit(f"refusing database {database_name(dsn)!r}: the name must start with 'bench_'")
    os.environ["BENCH_DSN_RAW"] = dsn
    sys.path.insert(0, peers)
    return importlib.import_module("bench_raw")


async def raw_cost(peers: str, dsn: str, n: int, concurrency: int) -> dict[str, object]:
    """Drain ``n`` jobs with raw's worker; rate and cost per job."""
    raw = load_raw(peers, dsn)
    await raw.install()
    conn = await asyncpg.connect(dsn)
    try:
        await raw.enqueue_bulk(conn, n, ENQ_BATCH)
    finally:
        await conn.close()
    mon = await asyncpg.connect(dsn)
    try:
        await vacuum_and_checkpoint(mon)
        before = await snapshot(mon)
        worker = raw.RawWorker(dsn, concurrency)
        raw.C.TRACK.reset(n)
        t0 = time.time()
        await worker.start()
        t_persist: float | None = None
        with anyio.move_on_after(TIMEOUT_S):
            await raw.C.TRACK.done.wait()
            while True:
                left = await mon.fetchval(
                    "SELECT (SELECT count(*) FROM jobs) + $1 - (SELECT count(*) FROM job_runs)", n
                )
                if left == 0:
                    t_persist = time.time()
                    break
                await anyio.sleep(POLL_S)
        backends_at_end = await database_backends_cpu_s(mon)  # raw's connections are still open
        await worker.stop()
        after = await snapshot(mon)
    finally:
        await mon.close()
    out: dict[str, object] = {"system": "raw_cost", "n": n, "concurrency": concurrency}
    if t_persist is None:
        out["timed_out"] = True
    else:
        out["jps"] = round(n / (t_persist - t0), 1)
    out["cost"] = cost_per_job(n, before, after, backends_at_end=backends_at_end)
    return out


def main() -> None:
    """Entry point: ``PEERS_DIR DSN [N] [CONCURRENCY]``; one JSON line on stdout."""
    peers, dsn = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 20_000  # noqa: PLR2004 - argv positions
    concurrency = int(sys.argv[4]) if len(sys.argv) > 4 else 10  # noqa: PLR2004
    result = anyio.run(raw_cost, peers, dsn, n, concurrency)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
