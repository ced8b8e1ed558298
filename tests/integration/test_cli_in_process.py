"""The management commands in this process (pgqueue.cli.main), so coverage sees them.

test_cli_manage.py runs the same commands as a user does, in subprocesses; these run each
command and output mode once more through ``main()``, and check what it printed.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.integration._cli import run_main

pytestmark = pytest.mark.pg


def test_every_command_and_output_mode(main_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(capsys, "schedule", "report", '{"n": 1}', "--run-at", "2030-01-01T00:00:00+00:00")[
        1
    ].strip() == ("job 1 scheduled")
    code, out, _ = run_main(capsys, "schedule", "--app", "tests.cli_app:scheduler", "echo", "[1]", "--json")
    assert (code, json.loads(out)) == (0, {"id": 2, "inserted": True})
    assert "job 3 scheduled" in run_main(capsys, "schedule", "t", "--unique-key", "k")[1]
    assert "already holds the key" in run_main(capsys, "schedule", "t", "--unique-key", "k")[1]

    code, out, _ = run_main(capsys, "jobs", "list", "--limit", "2")
    assert code == 0
    assert "next page: --cursor" in out
    assert "pending" in out  # the newest two: 3 and 2
    listed = json.loads(run_main(capsys, "jobs", "list", "--state", "pending", "--json")[1])
    assert [j["id"] for j in listed["items"]] == [3, 2]
    shown = run_main(capsys, "jobs", "show", "1")[1]
    assert "job 1: report in default, scheduled" in shown
    assert '"n":1' in shown

    assert "suspend done" in run_main(capsys, "jobs", "suspend", "1")[1]
    assert "resume done" in run_main(capsys, "jobs", "resume", "1")[1]
    assert json.loads(run_main(capsys, "jobs", "cancel", "1", "--json")[1])["outcome"] == "cancelled"
    assert "retry done" in run_main(capsys, "jobs", "retry", "1")[1]
    assert "delete done" in run_main(capsys, "jobs", "delete", "1")[1]
    code, _, err = run_main(capsys, "jobs", "cancel", "1")
    assert (code, err.strip()) == (
        1,
        "error: job 1 is not live (it ended, or never existed): nothing to cancel",
    )
    assert run_main(capsys, "jobs", "cancel", "3")[0] == 0
    assert "job 3: cancelled" in run_main(capsys, "jobs", "wait", "3")[1]
    assert json.loads(run_main(capsys, "jobs", "wait", "3", "--json")[1])["state"] == "cancelled"
    code, _, err = run_main(capsys, "jobs", "wait", "2", "--timeout", "0.1")
    assert (code, err.strip()) == (1, "error: job 2 did not end within 0.1 s")

    stats = run_main(capsys, "stats")[1]
    assert "pending" in stats
    assert "echo" in stats
    assert json.loads(run_main(capsys, "stats", "--json")[1])["by_type"]["echo"]["pending"] == 1
    assert "default" in run_main(capsys, "queues")[1]
    assert json.loads(run_main(capsys, "queues", "--json")[1])["default"]["pending"] == 1
    assert "heartbeat" in run_main(capsys, "workers")[1]
    assert json.loads(run_main(capsys, "workers", "--json")[1]) == []
    types = run_main(capsys, "types", "--app", "tests.cli_app:scheduler")[1]
    assert "echo" in types
    described = json.loads(run_main(capsys, "types", "--app", "tests.cli_app:scheduler", "--json")[1])
    assert {t["name"] for t in described} >= {"echo", "hang"}


def test_suspend_with_app_asks_a_running_job_of_a_suspendable_type(
    main_env: None, dsn: str, schema_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(capsys, "schedule", "resumable", "--app", "tests.cli_app:scheduler")[0] == 0

    async def claim() -> None:  # a worker that claimed the job and runs it
        from pgqueue import Scheduler

        async with Scheduler(dsn, schema=schema_name) as s:
            store = await s.open()
            wid, _ = await store.worker_register(["default"])
            assert len(await store.job_claim_many(["default"], 1, wid)) == 1

    asyncio.run(claim())
    code, _, err = run_main(capsys, "jobs", "suspend", "1")
    assert (code, err.strip()) == (1, "error: cannot suspend job 1: job 1 is running")
    code, out, _ = run_main(capsys, "jobs", "suspend", "1", "--app", "tests.cli_app:scheduler")
    assert (code, out.strip()) == (0, "job 1: suspend done")
    shown = json.loads(run_main(capsys, "jobs", "show", "1", "--json")[1])
    assert (shown["state"], shown["suspend_requested"]) == ("running", True)
