"""``pgqueue dashboard`` as a user runs it: a real process on a free port, stopped by SIGINT.

The process says where it listens on stderr (``--port 0`` takes any free port); the test
reads that line under a deadline, fetches the API and a page over TCP (and is refused under
a foreign Host header), then sends SIGINT and expects exit code 0. A public address without
a token or --read-only is refused.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx2
import pytest
from anyio.abc import Process

from pgqueue import Scheduler
from pgqueue.cli.dashboard import allowed_hosts
from tests._support import WAIT_S

pytestmark = pytest.mark.pg

_URL = re.compile(r"pgqueue dashboard on (http://\S+/) \(")


async def _never(job: object) -> None:
    """A handler no test runs: the job only has to exist."""


def _env(dsn: str, schema: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PGQUEUE_DASHBOARD_TOKEN"}
    return {**env, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": schema, **extra}


@asynccontextmanager
async def dashboard(dsn: str, schema: str, *args: str, **env: str) -> AsyncIterator[tuple[str, Process]]:
    """The running command and its URL; stopped by SIGINT at the end (exit 0 expected)."""
    cmd = [sys.executable, "-m", "pgqueue", "dashboard", "--port", "0", *args]
    async with await anyio.open_process(cmd, env=_env(dsn, schema, **env)) as proc:
        assert proc.stderr is not None
        seen = b""
        try:
            with anyio.fail_after(WAIT_S):
                while (found := _URL.search(seen.decode(errors="replace"))) is None:
                    seen += await proc.stderr.receive()
            yield found.group(1), proc
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
            with anyio.fail_after(WAIT_S):
                await proc.wait()
        assert proc.returncode == 0, seen


async def test_it_serves_the_api_and_the_pages_and_stops_on_sigint(
    scheduler: Scheduler, dsn: str, schema_name: str
) -> None:
    scheduler.register("t", _never)
    await scheduler.schedule("t", queue="idle")
    async with dashboard(dsn, schema_name) as (url, _):
        assert url.startswith("http://127.0.0.1:")
        async with httpx2.AsyncClient(base_url=url) as c:
            stats = await c.get("api/stats")
            assert stats.status_code == 200
            assert stats.json()["by_queue"]["idle"]["pending"] == 1
            page = await c.get("")
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert page.headers["x-frame-options"] == "DENY"
            assert (await c.get("api/stats", headers={"Host": "localhost"})).status_code == 200
            rebound = await c.get("api/stats", headers={"Host": "evil.example"})  # DNS rebinding
            assert (rebound.status_code, rebound.json()["error"]) == (400, "bad_host")


async def test_with_a_token_from_the_environment_it_listens_beyond_loopback(
    scheduler: Scheduler, dsn: str, schema_name: str
) -> None:
    del scheduler  # the migrated schema it serves
    async with dashboard(dsn, schema_name, "--host", "0.0.0.0", PGQUEUE_DASHBOARD_TOKEN="t0ken") as (url, _):
        local = url.replace("0.0.0.0", "127.0.0.1")
        async with httpx2.AsyncClient(base_url=local) as c:
            assert (await c.get("api/stats")).status_code == 401
            assert (await c.get("api/stats", headers={"Authorization": "Bearer t0ken"})).status_code == 200


@pytest.mark.parametrize(
    ("host", "token", "expected"),
    [
        ("127.0.0.1", None, ["localhost", "127.0.0.1", "::1"]),
        ("localhost", None, ["localhost", "127.0.0.1", "::1"]),
        ("[::1]", None, ["localhost", "127.0.0.1", "::1"]),
        ("127.0.0.2", None, ["localhost", "127.0.0.1", "::1", "127.0.0.2"]),
        ("127.0.0.1", "t0ken", None),  # a rebound page cannot produce the token
        ("0.0.0.0", None, None),  # --read-only on the network: reached by names not known here
    ],
)
def test_served_open_on_loopback_it_allows_only_loopback_hosts(
    host: str, token: str | None, expected: list[str] | None
) -> None:
    assert allowed_hosts(host, token) == expected


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "example.com", "::"])
def test_a_public_address_without_token_or_read_only_is_refused(host: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"PGQUEUE_DASHBOARD_TOKEN", "PGQUEUE_DSN"}}
    done = subprocess.run(
        [sys.executable, "-m", "pgqueue", "dashboard", "--host", host],
        capture_output=True,
        text=True,
        env=env,
        timeout=WAIT_S,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "loopback" in lines[0]
    assert "--token" in lines[0]
    assert done.stdout == ""
