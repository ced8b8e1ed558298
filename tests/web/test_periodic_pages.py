"""The dashboard's Periodic page and ``GET /api/periodic``, on a real server."""

from __future__ import annotations

import datetime as dt
import html

import httpx2 as httpx
import pytest

from pgqueue import Job, Scheduler
from pgqueue.periodic.ticks import EveryTicks
from tests._support import pg_store
from tests.web._pages import XSS, row_of

pytestmark = pytest.mark.pg


async def noop(job: Job) -> None:
    return None


def past_tick() -> dt.datetime:
    tick = EveryTicks(60).latest(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert tick is not None
    return tick


async def declare_and_fire(s: Scheduler) -> dt.datetime:
    s.register("sync", noop, queue="cron")
    s.add_periodic("sync_prices", every=60, job="sync")
    s.add_periodic("nightly", "30 2 * * *", job="sync", timezone="Europe/Paris", overlap=False)
    t = past_tick()
    assert await s.enqueue_due_periodic(t) == 1
    return t


async def test_the_periodic_page_lists_declarations_with_their_last_tick(
    client: httpx.AsyncClient, scheduler: Scheduler
) -> None:
    empty = await client.get("/periodic")
    assert empty.status_code == 200
    assert "No periodic declaration" in empty.text
    assert 'href="/periodic" aria-current="page">Periodic</a>' in empty.text
    assert '<a href="/periodic">Periodic</a>' in (await client.get("/workers")).text  # in every page's nav
    t = await declare_and_fire(scheduler)
    response = await client.get("/periodic")
    assert response.status_code == 200
    page = response.text
    assert 'aria-current="page">Periodic</a>' in page
    synced = row_of(page, "periodic", "sync_prices")
    assert "every 1m" in synced
    assert t.strftime("%Y-%m-%d %H:%M:%S") in synced
    assert 'href="/jobs?type=sync"' in synced
    assert 'href="/jobs?queue=cron"' in synced
    assert 'href="/jobs/1"' in synced
    assert "state-pending" in synced
    nightly = row_of(page, "periodic", "nightly")
    assert "30 2 * * * (Europe/Paris)" in nightly
    assert "not declared here" not in nightly


async def test_rows_of_other_applications_are_marked_and_escaped(
    client: httpx.AsyncClient, scheduler: Scheduler
) -> None:
    other = Scheduler(backend=await scheduler.open())
    other.register("t", noop)
    other.add_periodic(XSS, every=60, job="t")
    await other.enqueue_due_periodic(past_tick())
    page = (await client.get("/periodic")).text
    assert XSS not in page
    assert html.escape(XSS) in page
    assert "(not declared here)" in page


async def test_api_periodic_answers_the_cli_json_shape(
    client: httpx.AsyncClient, scheduler: Scheduler
) -> None:
    t = await declare_and_fire(scheduler)
    response = await client.get("/api/periodic")
    assert response.status_code == 200
    listed = response.json()
    assert [p["name"] for p in listed] == ["nightly", "sync_prices"]
    synced = listed[1]
    assert synced == {
        "name": "sync_prices",
        "schedule": "every 1m",
        "type": "sync",
        "queue": "cron",
        "next_fire_at": synced["next_fire_at"],
        "last_tick": t.isoformat(),
        "last_job_id": 1,
        "last_outcome": "pending",
        "declared": True,
    }
    assert dt.datetime.fromisoformat(synced["next_fire_at"]) > dt.datetime.now(dt.UTC) - dt.timedelta(
        seconds=60
    )
    assert listed[0]["last_tick"] is None


async def test_a_schema_without_the_periodic_table_answers_503(
    client: httpx.AsyncClient, scheduler: Scheduler
) -> None:
    store = await pg_store(scheduler)
    await store.pool.execute(f'DROP TABLE "{scheduler.schema}".periodic')
    page = await client.get("/periodic")
    assert page.status_code == 503
    assert "pgqueue migrate" in page.text
    api = await client.get("/api/periodic")
    assert api.status_code == 503
    assert api.json()["error"] == "schema"
