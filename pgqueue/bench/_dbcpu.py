"""The database server's CPU time, read from ``/proc``: what a drain costs PostgreSQL per job.

A drain's CPU on the server side is user + system time of every PostgreSQL process: the
backends of the worker's pool (forked when the pool connects, gone once it closes), the
monitoring connection, and the background processes (checkpointer, background writer,
WAL writer, autovacuum launcher and workers, …). All of them are children of the
postmaster, so one snapshot is

- ``utime + stime + cutime + cstime`` of every live child of the postmaster (a child's own
  reaped children, such as an ``archive_command``, are in its ``cutime``), plus
- the postmaster's own ``cutime + cstime``: the children that exited and were reaped,
  which is where the pool's backends end up once it closes.

Two snapshots around a drain, divided by its jobs, give microseconds per job. The figure
is the whole server's: anything else that runs on it inside the window is counted too,
as with the WAL counters of ``_stats``. The kernel reports whole clock ticks
(``SC_CLK_TCK``, usually 10 ms), so each long-lived process's difference may be off by a
tick: with the half-dozen processes of a quiet server, about half a microsecond per job
over a drain of 20,000 jobs, a few at worst.

Because the whole server's figure also counts other databases' clients (on a shared
server, other people's tests), a second figure keeps to the benchmark database's own
client backends: their CPU read just before the drain's connections close (they are
idle then, and were forked after the first snapshot), less the monitoring connection's
at the first snapshot. It leaves out the background processes and what a backend spends
on its own exit.

This needs the server on this machine, its processes visible in ``/proc``. The backend
of the monitoring connection is looked up by ``pg_backend_pid()`` and accepted only when
that process is a PostgreSQL process started when ``pg_stat_activity`` says it was (a
server in a container or on another host reports pids of another namespace); otherwise
the snapshot is None and so is the figure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import asyncpg

__all__ = [
    "ProcStat",
    "cpu_us_per_job",
    "database_backends_cpu_s",
    "parse_stat",
    "postmaster_pid",
    "read_stat",
    "server_cpu_s",
    "tree_cpu_ticks",
]

PROC = Path("/proc")
START_TOLERANCE_S = 2.0  # /proc/stat's btime is whole seconds; the fork is a few ms before backend_start
POSTGRES_NAMES = ("postgres", "postmaster")
CONSISTENT_TRIES = 5  # re-reads when a child is reaped between the postmaster's two reads


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` used here; times in clock ticks."""

    pid: int
    comm: str
    ppid: int
    utime: int
    stime: int
    cutime: int
    """Reaped children's user time (including their own reaped children's)."""
    cstime: int
    starttime: int
    """Ticks after boot at which the process started."""


def parse_stat(text: str) -> ProcStat:
    """Parse one ``/proc/<pid>/stat`` line (proc(5)).

    The command name sits between the first ``(`` and the *last* ``)``: it may itself hold
    spaces and parentheses. The fields after it are numbered from 3 (state).
    """
    head, _, tail = text.rpartition(")")
    pid, _, comm = head.partition("(")
    fields = tail.split()

    def field(number: int) -> int:
        return int(fields[number - 3])

    return ProcStat(
        pid=int(pid),
        comm=comm,
        ppid=field(4),
        utime=field(14),
        stime=field(15),
        cutime=field(16),
        cstime=field(17),
        starttime=field(22),
    )


def read_stat(pid: int) -> ProcStat | None:
    """``/proc/<pid>/stat`` parsed, or None when the process is gone (or /proc is absent)."""
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError, IndexError):
        return None


def _children(parent: int) -> list[ProcStat]:
    """Every live process whose parent is ``parent`` (a scan of /proc: works on every kernel)."""
    stats = (read_stat(int(entry.name)) for entry in PROC.iterdir() if entry.name.isdigit())
    return [stat for stat in stats if stat is not None and stat.ppid == parent]


def tree_cpu_ticks(parent: int) -> int | None:
    """User + system ticks of ``parent``'s live children and of its reaped ones (see the module).

    A child reaped between the listing and the read of the parent's ``cutime`` would be
    counted twice or not at all, so the parent is read before and after the listing and
    the pass is repeated when its reaped total moved in between.
    """
    total = None
    for _ in range(CONSISTENT_TRIES):
        before = read_stat(parent)
        live = sum(c.utime + c.stime + c.cutime + c.cstime for c in _children(parent))
        after = read_stat(parent)
        if before is None or after is None:
            return None
        total = live + after.cutime + after.cstime
        if (after.cutime, after.cstime) == (before.cutime, before.cstime):
            break
    return total  # after CONSISTENT_TRIES reapings in a row: off by one backend at most


def _boot_time() -> float | None:
    try:
        for line in (PROC / "stat").read_text(encoding="ascii").splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def _is_postgres(stat: ProcStat | None) -> bool:
    return stat is not None and stat.comm.startswith(POSTGRES_NAMES)


async def postmaster_pid(conn: asyncpg.Connection) -> int | None:
    """The pid of the server's postmaster when it runs on this machine, else None (module docstring)."""
    row = await conn.fetchrow(
        "SELECT pid, extract(epoch FROM backend_start)::float8 AS started"
        " FROM pg_stat_activity WHERE pid = pg_backend_pid()"
    )
    boot = _boot_time()
    if row is None or boot is None:
        return None
    backend = read_stat(int(row["pid"]))
    if backend is None or not _is_postgres(backend):
        return None
    started = boot + backend.starttime / os.sysconf("SC_CLK_TCK")
    if abs(started - float(row["started"])) > START_TOLERANCE_S:
        return None  # a local process that happens to have the remote backend's pid
    return backend.ppid if _is_postgres(read_stat(backend.ppid)) else None


async def server_cpu_s(conn: asyncpg.Connection) -> float | None:
    """CPU seconds the server's processes have used (see the module), or None when not readable."""
    pid = await postmaster_pid(conn)
    ticks = None if pid is None else tree_cpu_ticks(pid)
    return None if ticks is None else ticks / os.sysconf("SC_CLK_TCK")


async def database_backends_cpu_s(conn: asyncpg.Connection) -> float | None:
    """CPU seconds the client backends of ``conn``'s database (its own included) have used so far."""
    pid = await postmaster_pid(conn)
    if pid is None:
        return None
    rows = await conn.fetch(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND backend_type = 'client backend'"
    )
    ticks = 0
    for row in rows:
        stat = read_stat(int(row["pid"]))
        if stat is not None and stat.ppid == pid:
            ticks += stat.utime + stat.stime + stat.cutime + stat.cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_us_per_job(before: float | None, after: float | None, n: int) -> float | None:
    """Microseconds of server CPU per job between two snapshots (None when either is missing)."""
    if before is None or after is None or n <= 0:
        return None
    return round((after - before) / n * 1e6, 2)
