"""What the `pgqueue` command prints when things go wrong: one line and an exit code.

Each case runs the real command in a subprocess and checks the whole of stderr.
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import subprocess
import sys
import textwrap
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import asyncpg
import pytest

from pgqueue import Scheduler
from tests._support import ROOT_DIR, until

pytestmark = pytest.mark.pg


def _env(dsn: str, schema: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PGQUEUE_DEBUG", "PGQUEUE_DSN")}
    return {**env, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": schema, **extra}


async def _pgqueue(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the command without blocking the loop (a test server may be serving on it)."""
    result = await anyio.run_process(
        [sys.executable, "-m", "pgqueue", *args], env=env, cwd=ROOT_DIR, check=False
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def _one_error_line(res: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert res.returncode == code, res
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _dsn_with(dsn: str, *, user: str | None = None, database: str | None = None) -> str:
    """The test DSN with another user or database (TCP and Unix-socket DSNs alike)."""
    parts = urllib.parse.urlsplit(dsn)
    netloc = parts.netloc if user is None else f"{user}@{parts.netloc.rpartition('@')[2]}"
    path = parts.path if database is None else f"/{database}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, path=path))


@asynccontextmanager
async def _password_refusing_server() -> AsyncIterator[int]:
    """A server that answers the way PostgreSQL does to a wrong password (SQLSTATE 28P01).

    The machines' servers use trust authentication, so a real wrong password cannot be
    produced there; this speaks just enough of the protocol to refuse one.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack("!i", await reader.readexactly(4))
                body = await reader.readexactly(length - 4)
                if struct.unpack("!i", body[:4])[0] == 80877103:  # SSLRequest: no TLS here
                    writer.write(b"N")
                    continue
                break
            writer.write(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
            await writer.drain()
            await reader.readexactly(1)  # 'p'
            (length,) = struct.unpack("!i", await reader.readexactly(4))
            await reader.readexactly(length - 4)
            fields = b'SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user "ada"\0\0'
            writer.write(b"E" + struct.pack("!i", len(fields) + 4) + fields)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_worker_on_an_unmigrated_schema_prints_one_line(dsn: str, schema_name: str) -> None:
    res = await _pgqueue("worker", "tests.cli_app:scheduler", env=_env(dsn, schema_name))
    _one_error_line(res, 1, "not migrated", "pgqueue migrate")


async def test_connection_errors_print_one_line(dsn: str, schema_name: str) -> None:
    cases = [
        (_dsn_with(dsn, database="pgqueue_no_such_db"), "pgqueue_no_such_db", "database name"),
        (_dsn_with(dsn, user="pgqueue_no_such_role"), "pgqueue_no_such_role", "user"),
        ("not a dsn", "invalid DSN", "check the DSN"),
    ]
    for bad, what, hint in cases:
        for args in (("migrate", "--dsn", bad), ("worker", "tests.cli_app:scheduler")):
            res = await _pgqueue(*args, env=_env(bad, schema_name))
            _one_error_line(res, 1, what, hint)


async def test_a_wrong_password_prints_one_line(schema_name: str) -> None:
    async with _password_refusing_server() as port:
        bad = f"postgresql://ada:wrong@127.0.0.1:{port}/postgres?sslmode=disable"
        for args in (("migrate",), ("worker", "tests.cli_app:scheduler")):
            res = await _pgqueue(*args, env=_env(bad, schema_name))
            _one_error_line(res, 1, "password authentication failed", "user and password")


async def test_debug_shows_the_traceback(schema_name: str) -> None:
    bad = "not a dsn"
    flag = await _pgqueue("migrate", "--debug", env=_env(bad, schema_name))
    env_var = await _pgqueue("migrate", env=_env(bad, schema_name, PGQUEUE_DEBUG="1"))
    for res in (flag, env_var):
        assert res.returncode == 1
        assert "Traceback" in res.stderr
        assert res.stderr.splitlines()[-1].startswith("error: cannot connect to the database: invalid DSN")


async def test_usage_errors_print_one_line_and_exit_2(dsn: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PGQUEUE_DSN"}
    _one_error_line(await _pgqueue("jobs", "show", "x", env=env), 2, "job_id")
    _one_error_line(await _pgqueue("worker", "nocolon", env=env), 2, "module:attribute")
    _one_error_line(
        await _pgqueue("worker", "tests.cli_app:scheduler", "--concurrency", "0", env=env), 2, "concurrency"
    )
    _one_error_line(
        await _pgqueue("worker", "tests.cli_app:scheduler", "--retention", "2x", env=env), 2, "--retention"
    )
    _one_error_line(  # a valid duration, but shorter than the failed runs' default: refused by the config
        await _pgqueue("worker", "tests.cli_app:scheduler", "--retention-failed", "1d", env=env),
        2,
        "retention",
    )
    _one_error_line(
        await _pgqueue("worker", "tests.cli_app:scheduler", "--loop", "trio", env=env), 2, "--loop"
    )
    _one_error_line(await _pgqueue("nosuchcommand", env=env), 2, "nosuchcommand")
    _one_error_line(await _pgqueue("migrate", "--bogus", env=env), 2, "--bogus")


async def test_worker_process_survives_handler_base_exceptions_and_stops_gracefully(
    dsn: str, scheduler: Scheduler, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """SystemExit, KeyboardInterrupt (from a thread) and a stray CancelledError in handlers
    fail their runs; the process keeps serving, and SIGTERM is still the graceful stop."""
    schema = scheduler.schema
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err:
        proc = subprocess.Popen(  # noqa: ASYNC220 - the worker process under test
            [sys.executable, "-m", "pgqueue", "worker", "tests.cli_app:scheduler"],
            env=_env(dsn, schema), cwd=ROOT_DIR, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
        try:
            names = ("exit3", "interrupt", "cancelled_by_someone", "echo")
            for name in names:
                scheduler.register(name, lambda job: None)
            ids = [
                await scheduler.schedule(name)
                for name in ("exit3", "interrupt", "cancelled_by_someone", "echo")
            ]

            async def all_logged() -> bool:
                return bool(await db.fetchval(f'SELECT count(*) FROM "{schema}".job_runs') == 4)

            await until(all_logged)
            assert proc.poll() is None  # still serving
            proc.send_signal(signal.SIGTERM)
            rc = await anyio.to_thread.run_sync(proc.wait)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert rc == 0, err_path.read_text()
    assert err_path.read_text() == ""  # no logging configured: pgqueue prints nothing
    rows = await db.fetch(f'SELECT job_id, outcome, error FROM "{schema}".job_runs ORDER BY job_id')
    assert [r["job_id"] for r in rows] == ids
    assert [r["outcome"] for r in rows] == ["failed", "failed", "failed", "succeeded"]
    assert "SystemExit: 3" in rows[0]["error"]
    assert "KeyboardInterrupt" in rows[1]["error"]
    assert "CancelledError" in rows[2]["error"]
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".workers') == 0  # deregistered


_APP = textwrap.dedent(
    """
    import asyncio, logging, sys
    import anyio
    from pgqueue import Job, Scheduler

    if sys.argv[3] == "configured":
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    async def main() -> None:
        s = Scheduler(sys.argv[1], schema=sys.argv[2])
        done = anyio.Event()

        @s.job("boom")
        async def boom(job: Job) -> None:
            done.set()
            raise ValueError("it broke")

        async with s:
            w = s.worker(poll_interval=60)
            async with anyio.create_task_group() as tg:
                await tg.start(w.run)
                job_id = await s.schedule("boom")
                await done.wait()
                await w.shutdown()
        print(job_id)

    asyncio.run(main())
    """
)


async def test_logs_are_silent_unless_configured_and_carry_their_fields(
    dsn: str, scheduler: Scheduler, tmp_path: Path
) -> None:
    script = tmp_path / "app.py"
    script.write_text(_APP)
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}, "PYTHONPATH": ROOT_DIR}
    silent = await anyio.run_process([sys.executable, str(script), dsn, scheduler.schema, "plain"], env=env)
    assert silent.stderr.decode() == ""
    loud = await anyio.run_process(
        [sys.executable, str(script), dsn, scheduler.schema, "configured"], env=env
    )
    job_id = loud.stdout.decode().strip()
    [failed] = [line for line in loud.stderr.decode().splitlines() if "job_failed" in line]
    # The order the README shows: the job's identity first, the outcome last.
    assert failed.startswith(
        f"WARNING job_failed job_id={job_id} type=boom queue=default attempt=1 duration_s="
    )
    assert failed.endswith(' error="ValueError: it broke" outcome=failed'), failed
