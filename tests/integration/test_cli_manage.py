"""The management commands, run as a user runs them: a subprocess against the test server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests._support import ROOT_DIR, drop_schema
from tests.integration._cli import in_a_terminal

pytestmark = pytest.mark.pg


def _run(*args: str, env: dict[str, str], cwd: str = ROOT_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgqueue", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


@pytest.fixture
async def cli_env(dsn: str, schema_name: str) -> AsyncIterator[dict[str, str]]:
    env = {**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": schema_name, "COLUMNS": "200"}
    env.pop("PGQUEUE_APP", None)
    migrated = _run("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    yield env
    await drop_schema(dsn, schema_name)


def _json(res: subprocess.CompletedProcess[str]) -> object:
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_schedule_list_show_and_act_on_jobs(cli_env: dict[str, str]) -> None:
    first = _json(_run("schedule", "report", '{"day": "2026-12-01"}', "--queue", "q1", "--json", env=cli_env))
    assert first == {"id": 1, "inserted": True}
    later = _run("schedule", "report", "null", "--run-at", "+3600", "--priority", "-2", env=cli_env)
    assert (later.returncode, later.stdout.strip()) == (0, "job 2 scheduled")
    keyed = [_json(_run("schedule", "t", "1", "--unique-key", "k", "--json", env=cli_env)) for _ in range(2)]
    assert keyed == [{"id": 3, "inserted": True}, {"id": 3, "inserted": False}]

    page = _json(_run("jobs", "list", "--json", env=cli_env))
    assert isinstance(page, dict)
    assert [(j["id"], j["state"]) for j in page["items"]] == [
        (3, "pending"),
        (2, "scheduled"),
        (1, "pending"),
    ]
    assert page["cursor"] is None
    paged = _json(_run("jobs", "list", "--limit", "2", "--json", env=cli_env))
    assert isinstance(paged, dict)
    rest = _json(_run("jobs", "list", "--cursor", paged["cursor"], "--json", env=cli_env))
    assert isinstance(rest, dict)
    assert [j["id"] for j in rest["items"]] == [1]
    table = _run("jobs", "list", "--queue", "q1", env=cli_env)
    assert table.returncode == 0
    assert "report" in table.stdout
    assert "│ 2 " not in table.stdout  # filtered out: queue default

    shown = _json(_run("jobs", "show", "1", "--json", env=cli_env))
    assert isinstance(shown, dict)
    assert (shown["params"], shown["queue"], shown["runs"]) == ({"day": "2026-12-01"}, "q1", [])
    human = _run("jobs", "show", "1", env=cli_env)
    assert "job 1: report in q1, pending" in human.stdout

    assert _run("jobs", "suspend", "2", env=cli_env).stdout.strip() == "job 2: suspend done"
    assert _json(_run("jobs", "show", "2", "--json", env=cli_env))["state"] == "suspended"  # type: ignore[index]
    assert _run("jobs", "resume", "2", env=cli_env).returncode == 0
    cancelled = _json(_run("jobs", "cancel", "1", "--json", env=cli_env))
    assert cancelled == {"id": 1, "action": "cancel", "outcome": "cancelled"}
    assert _run("jobs", "retry", "1", env=cli_env).stdout.strip() == "job 1: retry done"
    assert _run("jobs", "delete", "2", env=cli_env).returncode == 0

    stats = _json(_run("stats", "--json", env=cli_env))
    assert stats == {
        "by_queue": {
            "q1": {"pending": 1, "scheduled": 0, "running": 0, "suspended": 0, "waiting": 0},
            "default": {"pending": 1, "scheduled": 0, "running": 0, "suspended": 0, "waiting": 0},
        },
        "by_type": {
            "report": {"pending": 1, "scheduled": 0, "running": 0, "suspended": 0, "waiting": 0},
            "t": {"pending": 1, "scheduled": 0, "running": 0, "suspended": 0, "waiting": 0},
        },
    }
    assert _json(_run("queues", "--json", env=cli_env)) == stats["by_queue"]
    assert _json(_run("workers", "--json", env=cli_env)) == []


def test_wait_prints_the_end_or_times_out(cli_env: dict[str, str]) -> None:
    assert _run("schedule", "t", env=cli_env).returncode == 0
    timed_out = _run("jobs", "wait", "1", "--timeout", "0.2", env=cli_env)
    assert timed_out.returncode == 1
    assert timed_out.stderr.strip() == "error: job 1 did not end within 0.2 s"
    assert _run("jobs", "cancel", "1", env=cli_env).returncode == 0
    ended = _json(_run("jobs", "wait", "1", "--json", env=cli_env))
    assert isinstance(ended, dict)
    assert ended["state"] == "cancelled"


def test_types_of_an_application_and_schedule_validated_by_them(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "PGQUEUE_APP": "tests.cli_app:scheduler"}
    described = _json(_run("types", "--json", env=env))
    assert isinstance(described, list)
    names = [t["name"] for t in described]
    assert names == sorted(names)
    assert {"echo", "exit3", "hang"} <= set(names)
    table = _run("types", env=env)
    assert "echo" in table.stdout
    unknown = _run("schedule", "nope", "{}", env=env)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error: unknown job type 'nope'")
    assert "\n" not in unknown.stderr.strip()
    ok = _json(_run("schedule", "echo", '{"x": 1}', "--json", env=env))
    assert ok == {"id": 1, "inserted": True}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("jobs", "show", "99"), 1, "error: job 99 not found"),
        (("jobs", "show", "abc"), 2, "error: Invalid value for 'job_id'"),
        (("jobs", "cancel", "99"), 1, "error: job 99 is not live"),
        (("jobs", "retry", "1"), 1, "error: cannot retry job 1: job 1 is pending"),
        (("schedule", "t", "{bad"), 2, "error: Invalid value for PARAMS: not valid JSON"),
        (("schedule", "t", "1", "--run-at", "soon"), 2, "error: Invalid value for --run-at"),
        (("jobs", "list", "--limit", "0"), 1, "error: limit must be an integer from 1 to 500"),
        (("jobs", "list", "--state", "lost"), 1, "error: unknown job state 'lost'"),
        (("types",), 2, "error: Invalid value for --app"),
    ],
)
def test_bad_input_is_one_line_and_an_exit_code(
    cli_env: dict[str, str], args: tuple[str, ...], code: int, message: str
) -> None:
    assert _run("schedule", "t", env=cli_env).returncode == 0  # job 1, pending
    res = _run(*args, env={k: v for k, v in cli_env.items() if k != "PGQUEUE_APP"})
    assert res.returncode == code, res.stdout + res.stderr
    assert res.stderr.startswith(message), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.stderr


def test_without_a_dsn_the_commands_use_the_embedded_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PGQUEUE_DSN", "PGQUEUE_SCHEMA")}
    res = _run("migrate", env=env, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert (
        res.stderr.strip()
        == "no --dsn or PGQUEUE_DSN: using the embedded PostgreSQL with data in .pgqueue/pgdata"
    )
    assert (tmp_path / ".pgqueue" / "pgdata").is_dir()
    listed = _run("jobs", "list", "--json", env=env, cwd=str(tmp_path))
    assert json.loads(listed.stdout) == {"items": [], "cursor": None}


def test_jobs_list_renders_a_table_in_a_terminal(cli_env: dict[str, str]) -> None:
    """In a pseudo-terminal (as a person runs it) the list is a drawn table with colours."""
    assert _run("schedule", "report", '{"day": 1}', env=cli_env).returncode == 0
    code, screen = in_a_terminal(["jobs", "list"], cli_env)
    assert code == 0, screen
    assert "┏━━━━┳" in screen  # rich's table frame
    assert "\x1b[" in screen  # styled for a terminal
    row = next(line for line in screen.splitlines() if "report" in line)
    assert "│ 1 " in row
    assert "pending" in row


def test_tenants_schedule_list_and_stats(cli_env: dict[str, str]) -> None:
    for tenant in ("acme", "acme", "globex"):
        assert _run("schedule", "t", "null", "--tenant", tenant, env=cli_env).returncode == 0
    assert _run("schedule", "t", env=cli_env).returncode == 0
    page = _json(_run("jobs", "list", "--tenant", "acme", "--json", env=cli_env))
    assert isinstance(page, dict)
    assert [(j["id"], j["tenant"]) for j in page["items"]] == [(2, "acme"), (1, "acme")]
    stats = _json(_run("stats", "--tenant", "globex", "--json", env=cli_env))
    assert stats == {"by_queue": {"default": _pending(1)}, "by_type": {"t": _pending(1)}}
    shown = _run("jobs", "show", "3", env=cli_env)
    assert "tenant: globex" in shown.stdout
    for args in (
        ("jobs", "list", "--tenant", ""),
        ("stats", "--tenant", "x" * 201),
        ("schedule", "t", "--tenant", ""),
    ):
        bad = _run(*args, env=cli_env)
        assert bad.returncode == 1, (args, bad.stderr)
        assert bad.stderr.count("\n") == 1, bad.stderr  # one line, no traceback
        assert "tenant must be a non-empty string of at most 200 characters" in bad.stderr
    assert len(_json(_run("jobs", "list", "--json", env=cli_env))["items"]) == 4  # type: ignore[index]


def _pending(n: int) -> dict[str, int]:
    return {"pending": n, "scheduled": 0, "running": 0, "suspended": 0, "waiting": 0}
