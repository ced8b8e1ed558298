"""Which PostgreSQL server the benchmark uses, and its throw-away ``bench_*`` databases.

Server: ``--dsn``/``BENCH_DSN``; else the local server on 127.0.0.1:5432 when it answers;
else an embedded PostgreSQL under ``.pgqueue/bench-pgdata``. Only the database name of the
DSN is replaced, so user, password, host and options stay as given.

Every phase starts from a freshly recreated database, and the recreate refuses any name not
starting with ``bench_``: the DSN may come from an environment variable, and a typo must
never drop a real database.
"""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg

from pgqueue._devdb import embedded_dsn

__all__ = [
    "DB_NAME",
    "database_name",
    "default_dsn",
    "drop_database",
    "machine_info",
    "recreate_database",
    "server_info",
    "wait_for_idle_database",
    "with_database",
]

DB_NAME = "bench_pgqueue"
LOCAL_HOST, LOCAL_PORT = "127.0.0.1", 5432
SERVER_SETTINGS = ("server_version", "synchronous_commit", "fsync", "shared_buffers", "max_connections")
IDLE_WAIT_S = 5.0  # how long to wait for closed connections' backends to exit (they flush their stats)


def with_database(dsn: str, name: str) -> str:
    """The same server and options, another database."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def database_name(dsn: str) -> str:
    """The database a DSN names."""
    return urlsplit(dsn).path.lstrip("/")


def local_server_answers() -> bool:
    """True when something listens on 127.0.0.1:5432."""
    try:
        socket.create_connection((LOCAL_HOST, LOCAL_PORT), timeout=1).close()
    except OSError:
        return False
    return True


def default_dsn(name: str = DB_NAME) -> str:
    """127.0.0.1:5432 when it answers, else an embedded server; database ``name``."""
    if local_server_answers():
        return f"postgresql://postgres@{LOCAL_HOST}:{LOCAL_PORT}/{name}"
    root = Path.cwd() / ".pgqueue" / "bench-pgdata"
    return with_database(embedded_dsn(root), name)


def _check_name(name: str) -> None:
    if not name.startswith("bench_"):
        raise SystemExit(f"refusing to drop database {name!r}: the name must start with 'bench_'")


async def recreate_database(dsn: str) -> None:
    """DROP and CREATE the benchmark database (refuses names not starting with bench_)."""
    name = database_name(dsn)
    _check_name(name)
    admin = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def drop_database(dsn: str) -> None:
    """DROP the benchmark database (same name check as :func:`recreate_database`)."""
    name = database_name(dsn)
    _check_name(name)
    admin = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def wait_for_idle_database(mon: asyncpg.Connection, timeout_s: float = IDLE_WAIT_S) -> bool:
    """Wait until no other client backend is connected to ``mon``'s database.

    Why: a backend reports its WAL and table counters to the cumulative statistics at most
    once a second while busy, and for certain when it exits. Reading ``pg_stat_wal`` or
    ``pg_stat_user_tables`` before the worker's backends are gone would miss their last
    second of work. Returns False when some backend is still there after ``timeout_s``.
    """
    with anyio.move_on_after(timeout_s):
        while True:
            others = await mon.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
            if others == 0:
                return True
            await anyio.sleep(0.02)
    return False


async def server_info(dsn: str) -> dict[str, str]:
    """Version and the settings that decide durable throughput."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT name, setting, coalesce(unit, '') AS unit FROM pg_settings WHERE name = ANY($1::text[])",
            list(SERVER_SETTINGS),
        )
        version_num = await conn.fetchval("SHOW server_version_num")
    finally:
        await conn.close()
    info = {r["name"]: r["setting"] for r in rows}
    unit = {r["name"]: r["unit"] for r in rows}.get("shared_buffers", "")
    if unit == "8kB" and info.get("shared_buffers", "").isdigit():
        info["shared_buffers_mb"] = str(int(info["shared_buffers"]) * 8 // 1024)
    info["server_version_num"] = str(version_num)
    return info


def machine_info() -> dict[str, str]:
    """CPU count, RAM and platform: the context every figure needs."""
    info = {"nproc": str(os.cpu_count() or 0), "platform": platform.platform()}
    try:
        meminfo = Path("/proc/meminfo").read_text(encoding="ascii").split("\n", 1)[0]
    except OSError:
        return info
    kb = meminfo.split()[1] if meminfo.startswith("MemTotal:") else ""
    if kb.isdigit():
        info["ram_gb"] = f"{int(kb) / 1024 / 1024:.1f}"
    return info
