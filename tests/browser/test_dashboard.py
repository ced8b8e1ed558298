"""The dashboard in a real headless Chromium: what a person sees and what their clicks do.

The server is uvicorn on a loopback port over a fresh schema; jobs run with a real worker.
Screenshots go to each test's ``tmp_path`` (``--basetemp`` keeps them somewhere known).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from pgqueue import Job, JobState, Scheduler
from tests.contract._helpers import run_until_ended

from .conftest import Dashboard

pytestmark = [pytest.mark.pg, pytest.mark.asyncio(loop_scope="module")]

PWNED = "<script>window.__pwned = 1</script>"


def register(s: Scheduler) -> None:
    @s.job("ok")
    async def ok(job: Job) -> dict[str, object]:
        return {"echo": job.params}

    @s.job("boom")
    async def boom(job: Job) -> None:
        raise RuntimeError(PWNED)

    @s.job("report", queue="reports")
    async def report(job: Job) -> None:
        return None


async def test_overview_shows_the_queues_and_both_charts(
    page: Page, dashboard: Dashboard, browser_scheduler: Scheduler, tmp_path: Path
) -> None:
    s = browser_scheduler
    register(s)
    ids = [await s.schedule("ok", {"n": i}) for i in range(5)]
    ids.append(await s.schedule("boom"))
    await run_until_ended(s, *ids, queues=["default"])
    await s.schedule_many("report", [{"n": i} for i in range(3)])  # no worker: they stay pending

    await page.goto(dashboard.url("/"))
    await expect(page).to_have_title(re.compile("Overview"))
    default = page.locator('#queues tr[data-queue="default"]')
    reports = page.locator('#queues tr[data-queue="reports"]')
    await expect(default).to_be_visible()
    await expect(reports.locator("td").nth(1)).to_have_text("3")  # pending
    await expect(default.locator("td").nth(6)).to_have_text("5")  # succeeded in the last hour
    await expect(default.locator("td").nth(8)).to_have_text("1")  # failed in the last hour
    for chart in ("#throughput-chart", "#failures-chart"):
        svg = page.locator(f"svg{chart}")
        await expect(svg).to_be_visible()
        box = await svg.bounding_box()
        assert box is not None
        assert box["width"] > 400
        assert await svg.locator("rect.bar").count() >= 1  # this minute's bar
    # The stylesheet loaded under the CSP: the header has its dark background.
    header_bg = await page.locator("header.top").evaluate("e => getComputedStyle(e).backgroundColor")
    assert header_bg == "rgb(17, 24, 39)"
    await page.screenshot(path=tmp_path / "overview.png", full_page=True)


async def test_filter_the_list_open_a_job_and_cancel_it(
    page: Page, dashboard: Dashboard, browser_scheduler: Scheduler, tmp_path: Path
) -> None:
    s = browser_scheduler
    register(s)
    done = await s.schedule("ok", {"n": 1})
    await run_until_ended(s, done, queues=["default"])
    pending = await s.schedule_many("report", [{"n": i} for i in range(3)])

    await page.goto(dashboard.url("/jobs"))
    await expect(page.locator("#jobs tbody tr")).to_have_count(4)
    await page.select_option('select[name="state"]', "pending")
    await page.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(re.compile(r"state=pending"))
    rows = page.locator("#jobs tbody tr")
    await expect(rows).to_have_count(3)
    assert [int(i) for i in await rows.evaluate_all("rs => rs.map(r => r.dataset.jobId)")] == sorted(
        pending, reverse=True
    )
    await page.screenshot(path=tmp_path / "jobs.png", full_page=True)

    target = pending[1]
    await page.get_by_role("link", name=str(target), exact=True).click()
    await expect(page).to_have_url(dashboard.url(f"/jobs/{target}"))
    await expect(page.locator("#job-state")).to_have_text("pending")
    await page.get_by_role("button", name="Cancel").click()
    await expect(page.locator("#job-state")).to_have_text("cancelled")
    await expect(page.get_by_role("status")).to_have_text("Cancelled.")
    await expect(page.get_by_role("button", name="Retry")).to_be_visible()  # what a cancelled job allows
    await expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    assert (await s.get_job(target)).state is JobState.CANCELLED
    await page.screenshot(path=tmp_path / "job-cancelled.png", full_page=True)


async def test_a_script_in_an_error_text_is_shown_and_never_run(
    page: Page, dashboard: Dashboard, browser_scheduler: Scheduler, tmp_path: Path
) -> None:
    s = browser_scheduler
    register(s)
    bad = await s.schedule("boom")
    await run_until_ended(s, bad, queues=["default"])

    await page.goto(dashboard.url(f"/jobs/{bad}"))
    await expect(page.locator("#job-state")).to_have_text("failed")
    await expect(page.locator("#last-error")).to_contain_text(f"RuntimeError: {PWNED}")
    await expect(page.locator("#runs summary")).to_have_text(f"RuntimeError: {PWNED}")
    assert await page.evaluate("typeof window.__pwned") == "undefined"
    assert await page.locator("script").count() == 0
    await page.screenshot(path=tmp_path / "job-failed.png", full_page=True)

    await page.goto(dashboard.url("/jobs?state=failed"))
    await expect(page.locator(f'#jobs tr[data-job-id="{bad}"] td.error')).to_have_text(
        f"RuntimeError: {PWNED}"
    )
    assert await page.evaluate("typeof window.__pwned") == "undefined"
