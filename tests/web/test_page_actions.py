"""The dashboard pages' forms: actions on one job, bulk retry, and the guard in front of them.

Each action is a POST with the page's CSRF field, checked by what the database then holds
(a 303 back to the job, or a 409 page naming the state that refused it). A read-only app
hides and refuses every form, a form without its CSRF field is refused, and with a token
the pages need the login first.
"""

from __future__ import annotations

import html
from typing import Any

import httpx2 as httpx
import pytest

from pgqueue import Job, JobState, Scheduler, _bulk
from pgqueue.web import create_app
from tests._support import running
from tests.contract._helpers import Hold, reach, run_until_ended
from tests.web._pages import CSRF_FIELD, finished_jobs, listed_ids, post
from tests.web.conftest import client_for

pytestmark = pytest.mark.pg


# -- actions on one job ------------------------------------------------------------------------


async def test_actions_walk_a_job_through_its_states(
    page_client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    s = scheduler_with_types
    job_id = await s.schedule("order", {"order_id": 1})
    page = (await page_client.get(f"/jobs/{job_id}")).text
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
        response = await post(page_client, f"/jobs/{job_id}/{action}")
        assert response.status_code == 303, (action, response.text)
        assert response.headers["location"] == f"/jobs/{job_id}?done={action}"
        assert (await s.get_job(job_id)).state is state
        shown = (await page_client.get(response.headers["location"])).text
        assert message in shown
        assert f'class="badge state-{state}"' in shown

    response = await post(page_client, f"/jobs/{job_id}/delete")
    assert response.status_code == 303
    assert response.headers["location"] == f"/jobs?deleted={job_id}"
    assert f"Job {job_id} deleted." in (await page_client.get(response.headers["location"])).text
    assert listed_ids((await page_client.get("/jobs?state=pending")).text) == []


async def test_cancel_of_a_running_job_is_requested(
    page_client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    s = scheduler_with_types
    hold = Hold()
    s.register("held", hold.run, queue="held")
    job_id = await s.schedule("held")
    async with running(s.worker(["held"], poll_interval=3600)):
        await reach(s, job_id, JobState.RUNNING)
        response = await post(page_client, f"/jobs/{job_id}/cancel")
        assert response.status_code == 303
        assert response.headers["location"] == f"/jobs/{job_id}?done=cancelling"
        await reach(s, job_id, JobState.CANCELLED)
    assert "Cancel requested" in (await page_client.get(response.headers["location"])).text


async def test_a_refused_action_shows_the_reason_with_409(
    page_client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    ok, _ = await finished_jobs(scheduler_with_types)
    response = await post(page_client, f"/jobs/{ok[0]}/cancel")
    assert response.status_code == 409
    assert f"cannot cancel job {ok[0]}: job {ok[0]} is succeeded" in response.text
    assert 'class="badge state-succeeded"' in response.text  # the job page, with its state
    pending = await scheduler_with_types.schedule("order", {"order_id": 1})
    response = await post(page_client, f"/jobs/{pending}/resume")
    assert response.status_code == 409
    assert "is pending" in response.text
    assert (await scheduler_with_types.get_job(pending)).state is JobState.PENDING


async def test_a_bad_id_in_an_action_is_a_400(page_client: httpx.AsyncClient) -> None:
    response = await post(page_client, "/jobs/abc/cancel")
    assert response.status_code == 400


async def test_actions_on_unknown_jobs_and_unknown_actions_are_404(
    page_client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    for action in ("cancel", "retry", "delete", "suspend", "resume"):
        response = await post(page_client, f"/jobs/424242/{action}")
        assert response.status_code == 404, action
    job_id = await scheduler_with_types.schedule("order", {"order_id": 1})
    assert (await post(page_client, f"/jobs/{job_id}/explode")).status_code == 404
    assert (await page_client.get(f"/jobs/{job_id}/data/secrets")).status_code == 404


# -- bulk retry --------------------------------------------------------------------------------


async def test_bulk_retry_retries_the_failed_jobs_of_the_filter(
    page_client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    s = scheduler_with_types

    @s.job("boom2")
    async def boom2(job: Job) -> None:
        raise ValueError("no")

    failed = [await s.schedule("boom") for _ in range(2)]
    other = await s.schedule("boom2")
    await run_until_ended(s, *failed, other, queues=["default"])
    page = (await page_client.get("/jobs?state=failed&type=boom")).text
    assert "Retry all failed jobs of type “boom”" in page

    response = await post(page_client, "/jobs/retry", queue="", type="boom")
    assert response.status_code == 303
    assert response.headers["location"] == "/jobs?type=boom&retried=2"
    assert "Retried 2 failed jobs" in (await page_client.get(response.headers["location"])).text
    assert [(await s.get_job(i)).state for i in failed] == [JobState.PENDING] * 2
    assert (await s.get_job(other)).state is JobState.FAILED  # another type: left alone


async def test_bulk_retry_goes_a_chunk_per_statement(
    page_client: httpx.AsyncClient, scheduler_with_types: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One form submits the whole backlog; each chunk is one statement naming its ids."""
    s = scheduler_with_types
    failed = [await s.schedule("boom") for _ in range(3)]
    await run_until_ended(s, *failed, queues=["default"])
    monkeypatch.setattr(_bulk, "RETRY_CHUNK", 2)
    chunks: list[list[int] | None] = []
    retry_many = s.retry_many

    async def spy(**kwargs: Any) -> list[int]:
        ids = kwargs.get("ids")
        chunks.append(None if ids is None else list(ids))
        return await retry_many(**kwargs)

    monkeypatch.setattr(s, "retry_many", spy)
    response = await post(page_client, "/jobs/retry", type="boom")
    assert response.headers["location"] == "/jobs?type=boom&retried=3"
    assert chunks == [failed[:2], failed[2:]]


# -- read-only, CSRF, token --------------------------------------------------------------------


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
    page_client: httpx.AsyncClient, scheduler_with_types: Scheduler
) -> None:
    job_id = await scheduler_with_types.schedule("order", {"order_id": 1})
    await page_client.get("/jobs")  # the CSRF cookie is set; the form field is missing below
    response = await page_client.post(f"/jobs/{job_id}/cancel", data={})
    assert response.status_code == 403
    assert (await scheduler_with_types.get_job(job_id)).state is JobState.PENDING


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
        token = CSRF_FIELD.search(login.text)
        assert token is not None
        logged_in = await c.post(
            "/login", data={"csrf": html.unescape(token.group(1)), "token": "s3cret", "next": "/jobs"}
        )
        assert logged_in.status_code == 303
        page = await c.get("/jobs")
    assert page.status_code == 200
    assert "Log out" in page.text
