"""What a drain costs besides time: WAL bytes, dead tuples, server CPU, the worker's memory.

WAL and tuples follow pgxjob's method: read the server's counters before and after the
drain and divide the difference by the number of jobs.

- ``pg_stat_wal`` (PostgreSQL 14 and later) counts WAL records, full-page images and bytes
  for the whole cluster. ``pg_current_wal_lsn()`` moves by the same bytes and exists
  everywhere, so both are reported. Both are cluster-wide: anything else running on the
  server at the same time is counted too.
- ``pg_stat_user_tables`` gives, per table of the benchmark database, the dead tuples
  (``n_dead_tup``: what vacuum must clean) and the inserts, updates (HOT or not) and deletes
  behind them. An autovacuum inside the window lowers ``n_dead_tup``, so its count is
  reported as well.

- The server's CPU time (user + system of every PostgreSQL process, background ones
  included, from ``/proc``), and that of the benchmark database's own client backends
  (see ``_dbcpu``), when the server runs on this machine.

Busy backends publish their counters at most once a second, so each snapshot is taken
when no other backend of the benchmark database is connected (the preload's and the
worker's have exited, which publishes their counters: see
:func:`~pgqueue.bench._server.wait_for_idle_database`) and after the monitoring
connection has published its own (:func:`flush_own_stats`). Otherwise the preload's
inserts would land inside the drain's window.

RSS is read from ``/proc/self/status`` (Linux); elsewhere only the peak from ``getrusage``
is available.
"""

from __future__ import annotations

import gc
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

import anyio
import asyncpg

from ._dbcpu import cpu_us_per_job, database_backends_cpu_s, server_cpu_s
from ._server import wait_for_idle_database

__all__ = [
    "Snapshot",
    "TableStats",
    "WalStats",
    "cost_per_job",
    "flush_own_stats",
    "rss_mb",
    "snapshot",
    "table_stats",
    "wal_stats",
]

PG_STAT_WAL_MIN = 140000  # server_version_num where pg_stat_wal appeared
PG_FORCE_FLUSH_MIN = 150000  # pg_stat_force_next_flush(): the shared-memory statistics of PostgreSQL 15
COLLECTOR_LAG_S = 0.6  # before 15, backends sent counters to the collector every 500 ms


@dataclass(frozen=True, slots=True)
class WalStats:
    """WAL position and (when the server has it) the ``pg_stat_wal`` counters."""

    lsn: int
    """``pg_current_wal_lsn()`` as a byte offset."""
    records: int | None
    fpi: int | None
    """Full-page images: the first change of each page after a checkpoint logs the whole page."""
    bytes: int | None


@dataclass(frozen=True, slots=True)
class TableStats:
    """Sums over every user table of one database."""

    n_dead_tup: int
    n_tup_ins: int
    n_tup_upd: int
    n_tup_hot_upd: int
    n_tup_del: int
    autovacuums: int


async def flush_own_stats(conn: asyncpg.Connection) -> None:
    """Publish ``conn``'s own pending counters now (its VACUUM, for example).

    A busy backend publishes at most once a second; ``pg_stat_force_next_flush()`` makes
    it publish when the current statement ends. Before PostgreSQL 15 there is no such
    call, and waiting for the collector's interval is the best we can do.
    """
    if int(await conn.fetchval("SHOW server_version_num")) >= PG_FORCE_FLUSH_MIN:
        await conn.execute("SELECT pg_stat_force_next_flush()")
    else:
        await anyio.sleep(COLLECTOR_LAG_S)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The server's counters at one moment (see the module)."""

    wal: WalStats
    tables: TableStats
    db_cpu_s: float | None
    """CPU seconds of the server's processes; None when the server is not readable in /proc."""
    db_backends_cpu_s: float | None
    """CPU seconds of the client backends of the benchmark database (the monitoring one, alone
    at the first snapshot)."""


async def snapshot(mon: asyncpg.Connection) -> Snapshot:
    """The counters once every other backend of the database has published its own and exited.

    The CPU is read last, once the pool's backends have exited (their time has moved to
    the postmaster's reaped-children total), and at the same point of both snapshots.
    """
    if not await wait_for_idle_database(mon):
        sys.stderr.write("warning: other connections to the benchmark database; its counters may lag\n")
    await flush_own_stats(mon)
    wal, tables = await wal_stats(mon), await table_stats(mon)
    backends = await database_backends_cpu_s(mon)
    return Snapshot(wal=wal, tables=tables, db_cpu_s=await server_cpu_s(mon), db_backends_cpu_s=backends)


async def wal_stats(conn: asyncpg.Connection) -> WalStats:
    """One snapshot of the cluster's WAL counters."""
    lsn = await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
    if int(await conn.fetchval("SHOW server_version_num")) < PG_STAT_WAL_MIN:
        return WalStats(lsn=int(lsn), records=None, fpi=None, bytes=None)
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    row = await conn.fetchrow("SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal")
    assert row is not None  # noqa: S101 - pg_stat_wal always has one row
    return WalStats(lsn=int(lsn), records=int(row[0]), fpi=int(row[1]), bytes=int(row[2]))


async def table_stats(conn: asyncpg.Connection) -> TableStats:
    """One snapshot of the table counters of ``conn``'s database."""
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    row = await conn.fetchrow(
        "SELECT coalesce(sum(n_dead_tup), 0), coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0),"
        " coalesce(sum(n_tup_hot_upd), 0), coalesce(sum(n_tup_del), 0), coalesce(sum(autovacuum_count), 0)"
        " FROM pg_stat_user_tables"
    )
    assert row is not None  # noqa: S101 - an aggregate always returns a row
    return TableStats(*(int(v) for v in row))


def _per_job(delta: int | None, n: int) -> float | None:
    return None if delta is None else round(delta / n, 2)


def cost_per_job(
    n: int, before: Snapshot, after: Snapshot, *, backends_at_end: float | None = None
) -> dict[str, object]:
    """The deltas between two snapshots, divided by the jobs drained in between.

    ``backends_at_end``: :func:`~pgqueue.bench._dbcpu.database_backends_cpu_s` just before the
    drain's connections closed (see ``_dbcpu``); the after snapshot no longer sees them.
    """

    def delta(a: int | None, b: int | None) -> int | None:
        return None if a is None or b is None else b - a

    wal0, wal1, tab0, tab1 = before.wal, after.wal, before.tables, after.tables
    cpu_s = None if before.db_cpu_s is None or after.db_cpu_s is None else after.db_cpu_s - before.db_cpu_s
    return {
        "wal_bytes": delta(wal0.bytes, wal1.bytes),
        "wal_bytes_per_job": _per_job(delta(wal0.bytes, wal1.bytes), n),
        "wal_lsn_bytes_per_job": _per_job(wal1.lsn - wal0.lsn, n),
        "wal_records_per_job": _per_job(delta(wal0.records, wal1.records), n),
        "wal_fpi_per_job": _per_job(delta(wal0.fpi, wal1.fpi), n),
        "dead_tuples_per_job": _per_job(tab1.n_dead_tup - tab0.n_dead_tup, n),
        "tup_ins_per_job": _per_job(tab1.n_tup_ins - tab0.n_tup_ins, n),
        "tup_upd_per_job": _per_job(tab1.n_tup_upd - tab0.n_tup_upd, n),
        "tup_hot_upd_per_job": _per_job(tab1.n_tup_hot_upd - tab0.n_tup_hot_upd, n),
        "tup_del_per_job": _per_job(tab1.n_tup_del - tab0.n_tup_del, n),
        "autovacuums": tab1.autovacuums - tab0.autovacuums,
        "db_cpu_s": None if cpu_s is None else round(cpu_s, 3),
        "db_cpu_us_per_job": cpu_us_per_job(before.db_cpu_s, after.db_cpu_s, n),
        "db_backends_cpu_us_per_job": cpu_us_per_job(before.db_backends_cpu_s, backends_at_end, n),
    }


def rss_mb() -> tuple[float | None, float]:
    """(current RSS, peak RSS) of this process in MiB, after a full garbage collection."""
    gc.collect()
    status: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            key, _, value = line.partition(":")
            if key in {"VmRSS", "VmHWM"}:
                status[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    if "VmHWM" in status:
        peak_mb = status["VmHWM"]
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_mb = (
            peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024
        )  # bytes on macOS, KiB elsewhere
    current = status.get("VmRSS")
    return (None if current is None else round(current, 1)), round(peak_mb, 1)
