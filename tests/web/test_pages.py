"""The dashboard's HTML pages on a real server: what they show, what their forms do, how they fail.

Requests go through httpx's ASGI transport into the real app (guard included), against a
migrated test schema; jobs run to their end with a real worker (``run_until_ended``), so
every page renders rows the database really holds.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import AsyncIterator

import anyio
import httpx2 as httpx
import pytest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import Mount

from pgqueue import Job, JobState, Scheduler
from pgqueue.web import create_app
from pgqueue.web._charts import HEIGHT, Series, bar_chart, nice_ticks
from pgqueue.web._render import PREVIEW_CHARS
from tests._support import Counter, running, until, wait
from tests.contract._helpers import Hold, reach, run_until_ended

pytestmark = pytest.mark.pg

XSS = "<script>alert(1)</script>"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Order(BaseModel):
    order_id: int
    note: str = ""


def register(s: Scheduler) -> None:
    """Job types the tests run: one succeeds, one fails for good with markup in its error."""

    @s.job("ok")
    async def ok(job: Job) -> dict[str, object]:
        return {"echo": job.params}

    @s.job("boom")
    async def boom(job: Job) -> None:
        raise RuntimeError(XSS)

    @s.job("order", queue="orders", params=Order)
    async def order(job: Job) -> None:
        return None


@pytest.fixture
async def scheduler_with_types(scheduler: Scheduler) -> Scheduler:
    register(scheduler)
    return scheduler


def client_for(app: object, base_url: str = "http://testserver") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)  # type: ignore[arg-type]


@pytest.fixture
async def client(scheduler_with_types: Scheduler) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(scheduler_with_types)) as c:
        yield c


async def csrf(client: httpx.AsyncClient, path: str = "/jobs") -> str:
    """The CSRF field of a page's forms (the GET also sets the cookie it is signed for)."""
    response = await client.get(path)
    assert response.status_code == 200
    found = _CSRF.search(response.text)
    assert found is not None, "the page has no form with a CSRF field"
    return html.unescape(found.group(1))


async def post(client: httpx.AsyncClient, path: str, **fields: str) -> httpx.Response:
    return await client.post(path, data={"csrf": await csrf(client), **fields})


def row_of(page: str, attr: str, value: object) -> str:
    """The ``<tr>`` of a table whose ``data-<attr>`` is ``value``."""
    found = re.search(rf'<tr data-{attr}="{re.escape(str(value))}">(.*?)</tr>', page, re.DOTALL)
    assert found is not None, f"no row with data-{attr}={value!r}"
    return found.group(1)


def listed_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-job-id="(\d+)">', page)]


def numbers(row: str) -> list[int]:
    """The numeric cells of a table row, in order (a zero is rendered as a grey 0)."""
    cells = re.findall(r'<td class="num">(.*?)</td>', row, re.DOTALL)
    return [int(re.sub(r"<[^>]+>", "", c).strip()) for c in cells]


async def finished_jobs(s: Scheduler) -> tuple[list[int], int]:
    """Two succeeded jobs and one failed, run by a real worker: (ok ids, failed id)."""
    ok: list[int] = [await s.schedule("ok", {"n": i}) for i in range(2)]
    bad: int = await s.schedule("boom")
    await run_until_ended(s, *ok, bad, queues=["default"])
    return ok, bad


# -- every page renders --------------------------------------------------------------------


async def test_overview_counts_queues_and_draws_both_charts(
    client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    s = scheduler_with_types
    await finished_jobs(s)
    await s.schedule("order", {"order_id": 1})  # the orders queue has no worker: it stays pending
    await s.schedule("order", {"order_id": 2}, run_at=dt.timedelta(hours=1))

    response = await client.get("/")
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
    wide = await client.get("/?window=6h")
    assert wide.status_code == 200
    assert "Runs finished per 5 minutes" in wide.text


async def test_overview_of_an_empty_schema(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert "No live jobs and no runs in the last hour" in response.text
    assert response.text.count("no runs in this window") == 2


async def test_job_list_shows_jobs_newest_first_with_links(
    client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    ok, bad = await finished_jobs(scheduler_with_types)
    response = await client.get("/jobs")
    assert response.status_code == 200
    assert listed_ids(response.text) == sorted([*ok, bad], reverse=True)
    assert f'href="/jobs/{bad}"' in response.text
    assert 'rel="next"' not in response.text


async def test_job_detail_shows_runs_result_and_params(
    client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    ok, bad = await finished_jobs(scheduler_with_types)
    page = (await client.get(f"/jobs/{ok[1]}")).text
    assert f"Job {ok[1]}" in page
    assert 'class="badge state-succeeded"' in page
    assert "&#34;n&#34;: 1" in page  # params, indented JSON (escaped quotes)
    assert "&#34;echo&#34;" in page  # the result
    runs = re.search(r'<table id="runs">(.*?)</table>', page, re.DOTALL)
    assert runs is not None
    assert runs.group(1).count("<tr>") == 2  # the header and one run
    failed = (await client.get(f"/jobs/{bad}")).text
    assert 'class="badge state-failed"' in failed
    assert "RuntimeError" in failed
    assert "Traceback" in failed


async def test_workers_page_lists_a_running_worker(
    client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    empty = await client.get("/workers")
    assert empty.status_code == 200
    assert "No worker is registered" in empty.text
    async with running(scheduler_with_types.worker(["default"], poll_interval=3600)):
        [worker] = await scheduler_with_types.workers()
        page = (await client.get("/workers")).text
    assert f'<td class="num">{worker.id}</td>' in page
    assert f'<td class="num">{worker.pid}</td>' in page
    assert html.escape(worker.hostname) in page


async def test_types_page_shows_the_params_schema(client: httpx.AsyncClient) -> None:
    response = await client.get("/types")
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
    client: httpx.AsyncClient, scheduler_with_types: Scheduler
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
        page = (await client.get(f"/jobs/{first}")).text
        assert 'class="badge state-running"' in page
        assert '<progress max="1" value="0.420">' in page
        assert "&lt;b&gt;halfway&lt;/b&gt;" in page
        assert f'<a href="/jobs/{after}">{after}</a>' in page  # its dependent
        assert f'action="/jobs/{first}/suspend"' in page  # running, and its type is suspendable
        response = await post(client, f"/jobs/{first}/suspend")
        assert response.status_code == 303
        assert response.headers["location"] == f"/jobs/{first}?done=suspend_requested"
        await reach(s, first, JobState.SUSPENDED)
    page = (await client.get(f"/jobs/{first}")).text
    assert 'class="badge state-suspended"' in page
    assert "<h2>Checkpoint</h2>" in page
    assert "&#34;page&#34;: 7" in page
    assert f'action="/jobs/{first}/resume"' in page
    waiting = (await client.get(f"/jobs/{after}")).text
    assert 'class="badge state-waiting"' in waiting
    assert f'<a href="/jobs/{first}">{first}</a>' in waiting  # what it depends on


# -- filters and paging --------------------------------------------------------------------


async def test_job_list_filters_by_state_queue_and_type(
    client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    s = scheduler_with_types
    ok, bad = await finished_jobs(s)
    pending = await s.schedule("order", {"order_id": 3})

    async def ids(query: str) -> list[int]:
        response = await client.get("/jobs" + query)
        assert response.status_code == 200
        return listed_ids(response.text)

    assert await ids("?state=failed") == [bad]
    assert await ids("?state=succeeded") == sorted(ok, reverse=True)
    assert await ids("?state=pending") == [pending]
    assert await ids("?queue=orders") == [pending]
    assert await ids("?type=ok") == sorted(ok, reverse=True)
    assert await ids("?type=ok&state=failed") == []
    assert await ids("?state=&queue=&type=") == sorted([*ok, bad, pending], reverse=True)  # empty: any
    page = (await client.get("/jobs?state=failed")).text
    assert '<option value="failed" selected>' in page  # the form shows the filter in force


async def test_job_list_pages_through_the_cursor(
    client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    ids = await scheduler_with_types.schedule_many("order", [{"order_id": i} for i in range(7)])
    seen: list[int] = []
    path: str | None = "/jobs?queue=orders&limit=3"
    pages = 0
    while path is not None:
        page = (await client.get(path)).text
        seen += listed_ids(page)
        pages += 1
        found = re.search(r'<a rel="next" href="([^"]+)">', page)
        path = html.unescape(found.group(1)) if found else None
        if path is not None:
            assert "queue=orders" in path
            assert "limit=3" in path  # the filters and page size carry over
    assert pages == 3
    assert seen == sorted(ids, reverse=True)


# -- actions -------------------------------------------------------------------------------


async def test_actions_walk_a_job_through_its_states(
    client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    s = scheduler_with_types
    job_id = await s.schedule("order", {"order_id": 1})
    page = (await client.get(f"/jobs/{job_id}")).text
    for shown in ("suspend", "cancel", "delete"):
        assert f'action="/jobs/{job_id}/{shown}"' in page
    for hidden in ("resume", "retry"):
        assert f'action="/jobs/{job_id}/{hidden}"' not in page

    steps = [
        ("suspend", JobState.SUSPENDED, "Suspended: out of the queue"),
        ("resume", JobState.PENDING, "Resumed: back in its queue."),
        ("cancel", JobState.CANCELLED, "Cancelled."),
        ("retry", JobState.PENDING, "Put back in its queue, due now."),
    ]
    for action, state, message in steps:
        response = await post(client, f"/jobs/{job_id}/{action}")
        assert response.status_code == 303, (action, response.text)
        assert response.headers["location"] == f"/jobs/{job_id}?done={action}"
        assert (await s.get_job(job_id)).state is state
        shown = (await client.get(response.headers["location"])).text
        assert message in shown
        assert f'class="badge state-{state}"' in shown

    response = await post(client, f"/jobs/{job_id}/delete")
    assert response.status_code == 303
    assert response.headers["location"] == f"/jobs?deleted={job_id}"
    assert f"Job {job_id} deleted." in (await client.get(response.headers["location"])).text
    assert listed_ids((await client.get("/jobs?state=pending")).text) == []


async def test_cancel_of_a_running_job_is_requested(
    client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    s = scheduler_with_types
    hold = Hold()
    s.register("held", hold.run, queue="held")
    job_id = await s.schedule("held")
    async with running(s.worker(["held"], poll_interval=3600)):
        await reach(s, job_id, JobState.RUNNING)
        response = await post(client, f"/jobs/{job_id}/cancel")
        assert response.status_code == 303
        assert response.headers["location"] == f"/jobs/{job_id}?done=cancelling"
        await reach(s, job_id, JobState.CANCELLED)
    assert "Cancel requested" in (await client.get(response.headers["location"])).text


async def test_a_refused_action_shows_the_reason_with_409(
    client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    ok, _ = await finished_jobs(scheduler_with_types)
    response = await post(client, f"/jobs/{ok[0]}/cancel")
    assert response.status_code == 409
    assert f"cannot cancel job {ok[0]}: job {ok[0]} is succeeded" in response.text
    assert 'class="badge state-succeeded"' in response.text  # the job page, with its state
    pending = await scheduler_with_types.schedule("order", {"order_id": 1})
    response = await post(client, f"/jobs/{pending}/resume")
    assert response.status_code == 409
    assert "is pending" in response.text
    assert (await scheduler_with_types.get_job(pending)).state is JobState.PENDING


async def test_bulk_retry_retries_the_failed_jobs_of_the_filter(
    client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    s = scheduler_with_types

    @s.job("boom2")
    async def boom2(job: Job) -> None:
        raise ValueError("no")

    failed = [await s.schedule("boom") for _ in range(2)]
    other = await s.schedule("boom2")
    await run_until_ended(s, *failed, other, queues=["default"])
    page = (await client.get("/jobs?state=failed&type=boom")).text
    assert "Retry all failed jobs of type “boom”" in page

    response = await post(client, "/jobs/retry", queue="", type="boom")
    assert response.status_code == 303
    assert response.headers["location"] == "/jobs?type=boom&retried=2"
    assert "Retried 2 failed jobs" in (await client.get(response.headers["location"])).text
    assert [(await s.get_job(i)).state for i in failed] == [JobState.PENDING] * 2
    assert (await s.get_job(other)).state is JobState.FAILED  # another type: left alone


async def test_read_only_hides_and_refuses_every_action(scheduler_with_types: Scheduler) -> None:
    s = scheduler_with_types
    _, bad = await finished_jobs(s)
    pending = await s.schedule("order", {"order_id": 1})
    async with client_for(create_app(s, read_only=True)) as c:
        for path in (f"/jobs/{bad}", f"/jobs/{pending}", "/jobs", "/jobs?state=failed"):
            page = (await c.get(path)).text
            assert '<form method="post"' not in page, path
            assert "read-only</span>" in page
        refused = [
            await c.post(f"/jobs/{pending}/cancel", data={"csrf": "x"}),
            await c.post(f"/jobs/{bad}/retry", data={"csrf": "x"}),
            await c.post("/jobs/retry", data={"csrf": "x"}),
        ]
    assert [r.status_code for r in refused] == [403, 403, 403]
    assert (await s.get_job(pending)).state is JobState.PENDING
    assert (await s.get_job(bad)).state is JobState.FAILED


async def test_an_action_without_the_csrf_field_is_refused(
    client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    job_id = await scheduler_with_types.schedule("order", {"order_id": 1})
    await client.get("/jobs")  # the CSRF cookie is set; the form field is missing below
    response = await client.post(f"/jobs/{job_id}/cancel", data={})
    assert response.status_code == 403
    assert (await scheduler_with_types.get_job(job_id)).state is JobState.PENDING


# -- errors and escaping -------------------------------------------------------------------


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
async def test_bad_requests_get_a_400_page(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 400, response.text
    assert "<h1>400 Bad request</h1>" in response.text
    assert 'aria-label="Main"' in response.text  # the layout, with its way back


async def test_a_bad_filter_is_quoted_escaped_in_the_400_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/jobs", params={"state": "<script>x</script>"})
    assert response.status_code == 400
    assert "&#39;&lt;script&gt;x&lt;/script&gt;&#39;" in response.text
    assert "<script" not in response.text


async def test_no_page_carries_a_script_or_an_inline_handler(
    client: httpx.AsyncClient, scheduler_with_types: Scheduler
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
        page = (await client.get(path)).text
        assert "<script" not in page.replace("&lt;script", ""), path
        assert re.search(r"\son[a-z]+\s*=", page) is None, path
        assert "javascript:" not in page, path


async def test_a_bad_id_in_an_action_is_a_400(client: httpx.AsyncClient) -> None:
    response = await post(client, "/jobs/abc/cancel")
    assert response.status_code == 400


@pytest.mark.parametrize("path", ["/jobs/424242", "/jobs/424242/data/params"])
async def test_an_unknown_job_gets_a_404_page(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert "<h1>404 Not found</h1>" in response.text
    assert "job 424242 not found" in response.text


async def test_actions_on_unknown_jobs_and_unknown_actions_are_404(
    client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    for action in ("cancel", "retry", "delete", "suspend", "resume"):
        response = await post(client, f"/jobs/424242/{action}")
        assert response.status_code == 404, action
    job_id = await scheduler_with_types.schedule("order", {"order_id": 1})
    assert (await post(client, f"/jobs/{job_id}/explode")).status_code == 404
    assert (await client.get(f"/jobs/{job_id}/data/secrets")).status_code == 404


async def test_markup_in_an_error_text_is_shown_as_text(
    client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    _, bad = await finished_jobs(scheduler_with_types)
    for path in (f"/jobs/{bad}", "/jobs?state=failed"):
        page = (await client.get(path)).text
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


async def test_long_params_show_a_preview_and_a_link_to_all(
    client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    s = scheduler_with_types
    note = "x" * (3 * PREVIEW_CHARS)
    big = await s.schedule("order", {"order_id": 1, "note": note})
    small = await s.schedule("order", {"order_id": 2})
    page = (await client.get(f"/jobs/{big}")).text
    assert "Truncated: showing" in page
    assert note not in page  # only the preview is on the page
    assert note[: PREVIEW_CHARS // 2] in page
    link = f'<a href="/jobs/{big}/data/params">Show all</a>'
    assert link in page
    full = await client.get(f"/jobs/{big}/data/params")
    assert full.status_code == 200
    assert full.headers["content-type"] == "application/json"
    assert full.json() == {"order_id": 1, "note": note}
    assert "Truncated" not in (await client.get(f"/jobs/{small}")).text


# -- deployment shapes ---------------------------------------------------------------------


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


async def test_with_a_token_pages_need_the_login(scheduler_with_types: Scheduler) -> None:
    async with client_for(create_app(scheduler_with_types, token="s3cret")) as c:
        response = await c.get("/jobs")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login")
        login = await c.get("/login")
        assert login.status_code == 200
        assert 'href="/static/dashboard.css"' in login.text  # the styled login template
        css = await c.get("/static/dashboard.css")
        assert css.status_code == 200  # the login page's stylesheet needs no token
        token = _CSRF.search(login.text)
        assert token is not None
        logged_in = await c.post(
            "/login", data={"csrf": html.unescape(token.group(1)), "token": "s3cret", "next": "/jobs"}
        )
        assert logged_in.status_code == 303
        page = await c.get("/jobs")
    assert page.status_code == 200
    assert "Log out" in page.text


# -- charts --------------------------------------------------------------------------------


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
