"""The examples run against the test server, so the documentation cannot go stale."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time

import asyncpg
import pytest

from tests._support import ROOT_DIR

pytestmark = pytest.mark.pg


def test_demo_runs_and_reports(dsn: str) -> None:
    res = subprocess.run(
        [sys.executable, "examples/demo.py"],
        capture_output=True,
        text=True,
        cwd=ROOT_DIR,
        timeout=120,
        env={**os.environ, "PGQUEUE_DSN": dsn},
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Using PGQUEUE_DSN" in res.stdout
    assert "7 runs logged for 5 jobs; 0 jobs left in the queue. Demo finished." in res.stdout


def test_web_app_schedules_and_runs_in_its_lifespan(
    dsn: str, schema_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.testclient import TestClient

    monkeypatch.setenv("PGQUEUE_DSN", dsn)
    monkeypatch.setenv("PGQUEUE_SCHEMA", schema_name)
    sys.modules.pop("examples.web_app", None)
    web_app = importlib.import_module("examples.web_app")
    try:
        with TestClient(web_app.app) as client:
            assert client.post("/signup", json={"email": "nope"}).status_code == 422
            accepted = client.post("/signup", json={"email": "ada@example.com"})
            assert accepted.status_code == 202
            assert isinstance(accepted.json()["job_id"], int)
            deadline = time.monotonic() + 30
            while client.get("/outbox").json()["sent"] != ["ada@example.com"]:
                assert time.monotonic() < deadline, "the job did not run"
                time.sleep(0.02)
    finally:
        sys.modules.pop("examples.web_app", None)
        import asyncio

        async def drop() -> None:
            conn = await asyncpg.connect(dsn)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')
            await conn.close()

        asyncio.run(drop())
