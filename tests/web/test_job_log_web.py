"""A run's job.log lines on the job page (escaped, no script) and in the API's job detail."""

from __future__ import annotations

import re

import pytest

from pgqueue import Job, Scheduler
from pgqueue.web import create_app
from pgqueue.web.openapi import document
from tests.contract._helpers import run_until_ended
from tests.web._pages import XSS
from tests.web.conftest import client_for

pytestmark = pytest.mark.pg


async def _logged_job(s: Scheduler) -> int:
    @s.job("chatty")
    async def chatty(job: Job) -> None:
        job.log.info(XSS, html="<img src=x onerror=alert(1)>")
        job.log.warning("second line", n=2)

    @s.job("quiet")
    async def quiet(job: Job) -> None:
        return None

    job_id = await s.schedule("chatty")
    quiet_id = await s.schedule("quiet")
    await run_until_ended(s, job_id, quiet_id)
    return job_id


async def test_the_job_page_shows_each_run_s_lines_as_text(scheduler: Scheduler) -> None:
    job_id = await _logged_job(scheduler)
    async with client_for(create_app(scheduler)) as c:
        page = (await c.get(f"/jobs/{job_id}")).text
        quiet = (await c.get(f"/jobs/{job_id + 1}")).text
    found = re.search(r'<table class="log">(.*?)</table>', page, re.DOTALL)
    assert found is not None
    table = found.group(1)
    assert "Log of run 1" in page
    assert table.count("<tr>") == 3  # the header and two lines
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in table
    assert "&lt;img src=x onerror=alert(1)&gt;" in table
    assert 'class="badge level-warning"' in table
    assert "n=2" in table
    assert "<script" not in page
    assert "<img" not in page
    assert 'class="log"' not in quiet  # a run that wrote nothing has no log section


async def test_the_api_job_detail_has_the_lines_and_the_list_leaves_them_out(scheduler: Scheduler) -> None:
    job_id = await _logged_job(scheduler)
    async with client_for(create_app(scheduler)) as c:
        detail = (await c.get(f"/api/jobs/{job_id}")).json()
        listed = (await c.get("/api/jobs")).json()
    [run] = detail["runs"]
    assert [(line["level"], line["msg"], line["fields"]) for line in run["log"]] == [
        ("info", XSS, {"html": "<img src=x onerror=alert(1)>"}),
        ("warning", "second line", {"n": 2}),
    ]
    assert all(isinstance(line["at"], str) for line in run["log"])
    assert all(r["log"] == [] for item in listed["items"] for r in item["runs"])


def test_the_openapi_run_schema_describes_the_lines() -> None:
    schemas = document()["components"]["schemas"]
    assert "log" in schemas["Run"]["required"]
    assert schemas["Run"]["properties"]["log"]["items"] == {"$ref": "#/components/schemas/LogLine"}
    assert set(schemas["LogLine"]["required"]) == {"at", "level", "msg", "fields"}
