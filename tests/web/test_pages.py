"""The dashboard's HTML pages on a real server: what they show, how they filter, how they fail.

Requests go through httpx's ASGI transport into the real app (guard included), against a
migrated test schema; jobs run to their end with a real worker (``run_until_ended``), so
every page renders rows the database really holds. What the pages' forms do (actions,
bulk retry, read-only, CSRF, the token) is in ``test_page_actions.py``.
"""

from __future__ import annotations

import datetime as dt
import html
import re

import anyio
import httpx2 as httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from pgqueue import Job, JobState, Scheduler
from pgqueue.web import create_app
from pgqueue.web._charts import HEIGHT, Series, bar_chart, nice_ticks
from pgqueue.web._render import PREVIEW_CHARS
from tests._support import Counter, running, until, wait
from tests.contract._helpers import Hold, reach
from tests.web._pages import XSS, csrf, finished_jobs, listed_ids, numbers, post, row_of
from tests.web.conftest import client_for

pytestmark = pytest.mark.pg


# -- every page renders ------------------------------------------------------------------------


async def test_overview_counts_queues_and_draws_both_charts(
    page_client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    s = scheduler_with_types
    await finished_jobs(s)
    await s.schedule("order", {"order_id": 1})  # the orders queue has no worker: it stays pending
    await s.schedule("order", {"order_id": 2}, run_at=dt.timedelta(hours=1))

    response = await page_client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    # pending, scheduled, running, suspended, waiting, succeeded, retried, failed, cancelled
    assert numbers(row_of(page, "queue", "default")) == [0, 0, 0, 0, 0, 2, 0, 1, 0]
    assert numbers(row_of(page, "queue", "orders")) == [1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert '<svg class="chart" id="throughput-chart"' in page
    assert '<svg class="chart" id="failures-chart"' in page
    assert "Runs finished per minute" in page
    assert "Failed runs per minute" in page
    assert 'href="/jobs?queue=default&amp;state=failed"' in page
    # Six hours in five-minute bars: the window changes the charts' buckets.
    wide = await page_client.get("/?window=6h")
    assert wide.status_code == 200
    assert "Runs finished per 5 minutes" in wide.text


async def test_overview_of_an_empty_schema(page_client: httpx.AsyncClient) -> None:
    response = await page_client.get("/")
    assert response.status_code == 200
    assert "No live jobs and no runs in the last hour" in response.text
    assert response.text.count("no runs in this window") == 2


async def test_job_list_shows_jobs_newest_first_with_links(
    page_client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    ok, bad = await finished_jobs(scheduler_with_types)
    response = await page_client.get("/jobs")
    assert response.status_code == 200
    assert listed_ids(response.text) == sorted([*ok, bad], reverse=True)
    assert f'href="/jobs/{bad}"' in response.text
    assert 'rel="next"' not in response.text


async def test_job_detail_shows_runs_result_and_params(
    page_client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    ok, bad = await finished_jobs(scheduler_with_types)
    page = (await page_client.get(f"/jobs/{ok[1]}")).text
    assert f"Job {ok[1]}" in page
    assert 'class="badge state-succeeded"' in page
    assert "&#34;n&#34;: 1" in page  # params, indented JSON (escaped quotes)
    assert "&#34;echo&#34;" in page  # the result
    runs = re.search(r'<table id="runs">(.*?)</table>', page, re.DOTALL)
    assert runs is not None
    assert runs.group(1).count("<tr>") == 2  # the header and one run
    failed = (await page_client.get(f"/jobs/{bad}")).text
    assert 'class="badge state-failed"' in failed
    assert "RuntimeError" in failed
    assert "Traceback" in failed


async def test_workers_page_lists_a_running_worker(
    page_client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    empty = await page_client.get("/workers")
    assert empty.status_code == 200
    assert "No worker is registered" in empty.text
    async with running(scheduler_with_types.worker(["default"], poll_interval=3600)):
        [worker] = await scheduler_with_types.workers()
        page = (await page_client.get("/workers")).text
    assert f'<td class="num">{worker.id}</td>' in page
    assert f'<td class="num">{worker.pid}</td>' in page
    assert html.escape(worker.hostname) in page
    assert '<th class="num">concurrency</th><th class="num">jobs held</th>' in page
    assert f'<td class="num">{worker.concurrency}</td>\n    <td class="num">0</td>' in page


async def test_types_page_shows_the_params_schema(page_client: httpx.AsyncClient) -> None:
    response = await page_client.get("/types")
    assert response.status_code == 200
    page = response.text
    for name in ("ok", "boom", "order"):
        assert f'<a href="/jobs?type={name}">{name}</a>' in page
    assert "&#34;order_id&#34;" in page  # the pydantic model's JSON Schema, pretty-printed
    assert "Untyped params" in page


async def test_types_page_without_types_says_how_to_get_them(scheduler: Scheduler) -> None:
    async with client_for(create_app(scheduler)) as c:
        response = await c.get("/types")
    assert response.status_code == 200
    assert "--app module:scheduler" in response.text


async def test_progress_suspend_at_a_checkpoint_and_dependencies_on_the_job_page(
    page_client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    s = scheduler_with_types
    started = Counter(1)

    @s.job("slow", queue="slow", suspendable=True)
    async def slow(job: Job) -> None:
        await job.set_progress(0.42, "<b>halfway</b>")
        started.hit(job.id)
        for _ in range(3000):  # a unit of work per turn, a checkpoint between them
            await anyio.sleep(0.01)
            await job.checkpoint({"page": 7})  # raises Suspended once the suspend request arrives
        raise AssertionError("no suspend request reached the handler")

    first = await s.schedule("slow")
    after = await s.schedule("ok", depends_on=[first])
    async with running(s.worker(["slow"], poll_interval=3600, progress_interval=0.01)):
        await wait(started.done)

        async def progress_written() -> bool:
            return (await s.get_job(first)).progress is not None

        await until(progress_written)
        page = (await page_client.get(f"/jobs/{first}")).text
        assert 'class="badge state-running"' in page
        assert '<progress max="1" value="0.420">' in page
        assert "&lt;b&gt;halfway&lt;/b&gt;" in page
        assert f'<a href="/jobs/{after}">{after}</a>' in page  # its dependent
        assert f'action="/jobs/{first}/suspend"' in page  # running, and its type is suspendable
        response = await post(page_client, f"/jobs/{first}/suspend")
        assert response.status_code == 303
        assert response.headers["location"] == f"/jobs/{first}?done=suspend_requested"
        await reach(s, first, JobState.SUSPENDED)
    page = (await page_client.get(f"/jobs/{first}")).text
    assert 'class="badge state-suspended"' in page
    assert "<h2>Checkpoint</h2>" in page
    assert "&#34;page&#34;: 7" in page
    assert f'action="/jobs/{first}/resume"' in page
    waiting = (await page_client.get(f"/jobs/{after}")).text
    assert 'class="badge state-waiting"' in waiting
    assert f'<a href="/jobs/{first}">{first}</a>' in waiting  # what it depends on


async def test_long_params_show_a_preview_and_a_link_to_all(
    page_client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    s = scheduler_with_types
    note = "x" * (3 * PREVIEW_CHARS)
    big = await s.schedule("order", {"order_id": 1, "note": note})
    small = await s.schedule("order", {"order_id": 2})
    page = (await page_client.get(f"/jobs/{big}")).text
    assert "Truncated: showing" in page
    assert note not in page  # only the preview is on the page
    assert note[: PREVIEW_CHARS // 2] in page
    link = f'<a href="/jobs/{big}/data/params">Show all</a>'
    assert link in page
    full = await page_client.get(f"/jobs/{big}/data/params")
    assert full.status_code == 200
    assert full.headers["content-type"] == "application/json"
    assert full.json() == {"order_id": 1, "note": note}
    assert "Truncated" not in (await page_client.get(f"/jobs/{small}")).text


async def test_pages_work_mounted_under_a_prefix(scheduler_with_types: Scheduler) -> None:
    s = scheduler_with_types
    job_id = await s.schedule("order", {"order_id": 1})
    outer = Starlette(routes=[Mount("/dash", app=create_app(s))])
    async with client_for(outer) as c:
        page = (await c.get("/dash/")).text
        assert 'href="/dash/static/dashboard.css"' in page
        assert 'href="/dash/jobs"' in page
        assert 'href="/dash/jobs?queue=orders"' in page
        css = await c.get("/dash/static/dashboard.css")
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        token = await csrf(c, "/dash/jobs")
        response = await c.post(f"/dash/jobs/{job_id}/suspend", data={"csrf": token})
    assert response.status_code == 303
    assert response.headers["location"] == f"/dash/jobs/{job_id}?done=suspend"
    assert (await s.get_job(job_id)).state is JobState.SUSPENDED


# -- filters and paging ------------------------------------------------------------------------


async def test_job_list_filters_by_state_queue_and_type(
    page_client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    s = scheduler_with_types
    ok, bad = await finished_jobs(s)
    pending = await s.schedule("order", {"order_id": 3})

    async def ids(query: str) -> list[int]:
        response = await page_client.get("/jobs" + query)
        assert response.status_code == 200
        return listed_ids(response.text)

    assert await ids("?state=failed") == [bad]
    assert await ids("?state=succeeded") == sorted(ok, reverse=True)
    assert await ids("?state=pending") == [pending]
    assert await ids("?queue=orders") == [pending]
    assert await ids("?type=ok") == sorted(ok, reverse=True)
    assert await ids("?type=ok&state=failed") == []
    assert await ids("?state=&queue=&type=") == sorted([*ok, bad, pending], reverse=True)  # empty: any
    page = (await page_client.get("/jobs?state=failed")).text
    assert '<option value="failed" selected>' in page  # the form shows the filter in force


async def test_job_list_pages_through_the_cursor(
    page_client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    ids = await scheduler_with_types.schedule_many("order", [{"order_id": i} for i in range(7)])
    seen: list[int] = []
    path: str | None = "/jobs?queue=orders&limit=3"
    pages = 0
    while path is not None:
        page = (await page_client.get(path)).text
        seen += listed_ids(page)
        pages += 1
        found = re.search(r'<a rel="next" href="([^"]+)">', page)
        path = html.unescape(found.group(1)) if found else None
        if path is not None:
            assert "queue=orders" in path
            assert "limit=3" in path  # the filters and page size carry over
    assert pages == 3
    assert seen == sorted(ids, reverse=True)


# -- errors and escaping -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/jobs/abc",
        "/jobs/0",
        "/jobs/-1",
        "/jobs/99999999999999999999",
        "/jobs/%D9%A3",  # an Arabic-Indic digit: isdigit() but not an id
        "/jobs?state=nope",
        "/jobs?cursor=not-a-cursor",
        "/jobs?limit=0",
        "/jobs?limit=501",
        "/jobs?limit=x",
        "/jobs?queue=" + "q" * 201,
        "/?window=2h",
        "/jobs/abc/data/params",
    ],
)
async def test_bad_requests_get_a_400_page(page_client: httpx.AsyncClient, path: str) -> None:
    response = await page_client.get(path)
    assert response.status_code == 400, response.text
    assert "<h1>400 Bad request</h1>" in response.text
    assert 'aria-label="Main"' in response.text  # the layout, with its way back


async def test_a_bad_filter_is_quoted_escaped_in_the_400_page(page_client: httpx.AsyncClient) -> None:
    response = await page_client.get("/jobs", params={"state": "<script>x</script>"})
    assert response.status_code == 400
    assert "&#39;&lt;script&gt;x&lt;/script&gt;&#39;" in response.text
    assert "<script" not in response.text


@pytest.mark.parametrize("path", ["/jobs/424242", "/jobs/424242/data/params"])
async def test_an_unknown_job_gets_a_404_page(page_client: httpx.AsyncClient, path: str) -> None:
    response = await page_client.get(path)
    assert response.status_code == 404
    assert "<h1>404 Not found</h1>" in response.text
    assert "job 424242 not found" in response.text


async def test_no_page_carries_a_script_or_an_inline_handler(
    page_client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    """The CSP (script-src 'self') would block them: the pages must work without any."""
    _, bad = await finished_jobs(scheduler_with_types)
    paths = [
        "/",
        "/?window=24h",
        "/jobs",
        "/jobs?state=failed",
        f"/jobs/{bad}",
        "/workers",
        "/types",
        "/jobs/x",
    ]
    for path in paths:
        page = (await page_client.get(path)).text
        assert "<script" not in page.replace("&lt;script", ""), path
        assert re.search(r"\son[a-z]+\s*=", page) is None, path
        assert "javascript:" not in page, path


async def test_markup_in_an_error_text_is_shown_as_text(
    page_client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    _, bad = await finished_jobs(scheduler_with_types)
    for path in (f"/jobs/{bad}", "/jobs?state=failed"):
        page = (await page_client.get(path)).text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path
        assert XSS not in page, path
        assert "<script" not in page, path  # no script element at all: the CSP allows none inline


async def test_markup_in_names_and_params_is_escaped(scheduler: Scheduler) -> None:
    scheduler.register("<i>t</i>", Hold().run, queue="<b>q</b>")
    job_id = await scheduler.schedule("<i>t</i>", {"html": "<img src=x onerror=alert(1)>"})
    async with client_for(create_app(scheduler)) as c:
        pages = [(await c.get(p)).text for p in ("/", "/jobs", f"/jobs/{job_id}", "/types")]
    for page in pages:
        assert "<b>q</b>" not in page
        assert "<i>t</i>" not in page
        assert "<img" not in page
    assert "&lt;b&gt;q&lt;/b&gt;" in pages[0]
    assert "&lt;img src=x onerror=alert(1)&gt;" in pages[2]


# -- charts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peak", "expected"),
    [
        (0, (1, 1)),
        (1, (1, 1)),
        (4, (1, 4)),
        (7, (2, 8)),
        (123, (50, 150)),
        (1000, (500, 1000)),
        (1001, (500, 1500)),
    ],
)
def test_y_axis_ticks_are_round(peak: int, expected: tuple[int, int]) -> None:
    assert nice_ticks(peak) == expected


def bar_heights(svg: str) -> list[float]:
    return [
        float(h)
        for h in re.findall(r'<rect class="bar" x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)"', svg)
    ]


def test_a_spike_is_the_tallest_bar_and_a_single_failure_stays_visible() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    starts = [start + dt.timedelta(minutes=i) for i in range(60)]
    values = [1] * 60
    values[30] = 500
    svg = str(
        bar_chart(
            chart_id="c",
            title="t",
            starts=starts,
            bucket_s=60,
            series=[Series("failed", "#c00", values)],
            y_label="runs",
        )
    )
    heights = bar_heights(svg)
    assert len(heights) == 60
    assert max(heights) == heights[30]
    assert heights[30] > 50 * min(heights)  # the spike stands out by its height alone
    assert min(heights) >= 2  # one failure among hundreds still shows
    assert max(heights) < HEIGHT
    assert "00:59" in svg  # the newest bucket is labelled
    assert "one bar per minute" in svg


def test_chart_text_is_escaped() -> None:
    svg = str(
        bar_chart(
            chart_id='"x',
            title="<script>x</script>",
            starts=[dt.datetime(2026, 1, 1, tzinfo=dt.UTC)],
            bucket_s=60,
            series=[Series("<b>", '"red', [1])],
            y_label="<y>",
        )
    )
    assert "<script>" not in svg
    assert "<b>" not in svg
    assert "<y>" not in svg
    assert 'fill=""red"' not in svg
