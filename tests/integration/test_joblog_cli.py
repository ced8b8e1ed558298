"""``pgqueue jobs show`` prints each run's job.log lines (and ``--json`` carries them)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from pgqueue import Job, LinearBackoff, Scheduler
from tests._support import ROOT_DIR
from tests.contract._helpers import run_until_ended

pytestmark = pytest.mark.pg


def _show(dsn: str, schema: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": schema, "COLUMNS": "200"}
    env.pop("PGQUEUE_APP", None)
    return subprocess.run(
        [sys.executable, "-m", "pgqueue", "jobs", "show", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT_DIR,
        timeout=120,
        check=False,
    )


async def test_jobs_show_prints_the_lines_of_each_run(scheduler: Scheduler, dsn: str) -> None:
    s = scheduler

    @s.job("t", retry=LinearBackoff(max_retries=1, base_delay=0))
    async def t(job: Job) -> None:
        job.log.info("[bold]attempt[/bold]", n=job.attempt, tags=["a", "b"])
        if job.attempt == 1:
            job.log.error("failing once")
            raise ValueError("once")

    job_id = await s.schedule("t")
    await run_until_ended(s, job_id)
    shown = _show(dsn, s.schema, str(job_id))
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    first, second = out.index("run 1 log (2 lines):"), out.index("run 2 log (1 line):")
    assert first < second
    run1, run2 = out[first:second], out[second:]
    # Rich markup in a message is printed as written, never interpreted.
    assert re.search(
        r"\d{2}:\d{2}:\d{2}\.\d{3} info    \[bold\]attempt\[/bold\] n=1 tags=\[\"a\",\"b\"\]", run1
    )
    assert "error   failing once" in run1
    assert "n=2" in run2
    assert "failing once" not in run2

    as_json = json.loads(_show(dsn, s.schema, str(job_id), "--json").stdout)
    assert [[line["msg"] for line in run["log"]] for run in as_json["runs"]] == [
        ["[bold]attempt[/bold]", "failing once"],
        ["[bold]attempt[/bold]"],
    ]
    assert as_json["runs"][0]["log"][0]["fields"] == {"n": 1, "tags": ["a", "b"]}
