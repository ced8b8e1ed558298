"""Tenants in the dashboard and its API: schedule with one, filter the list and the stats by
it, refuse a bad one with a 400, and document the parameter."""

from __future__ import annotations

import httpx2
import pytest

from pgqueue import Scheduler
from pgqueue.web.openapi import document
from tests.contract._helpers import run_until_ended
from tests.web._pages import listed_ids

pytestmark = pytest.mark.pg


async def test_the_api_schedules_lists_and_counts_by_tenant(
    scheduler_with_types: Scheduler, client: httpx2.AsyncClient
) -> None:
    s = scheduler_with_types
    r = await client.post("/api/jobs", json={"type": "ok", "params": 1, "tenant": "acme"})
    assert r.status_code == 201, r.text
    acme = r.json()["id"]
    await run_until_ended(s, acme)
    live_acme = await s.schedule("ok", tenant="acme")
    await s.schedule("ok", tenant="globex")
    await s.schedule("ok")
    page = (await client.get("/api/jobs", params={"tenant": "acme"})).json()
    assert [(j["id"], j["state"], j["tenant"]) for j in page["items"]] == [
        (live_acme, "pending", "acme"),
        (acme, "succeeded", "acme"),
    ]
    assert (await client.get(f"/api/jobs/{acme}")).json()["tenant"] == "acme"
    stats = (await client.get("/api/stats", params={"tenant": "acme"})).json()
    assert stats["by_type"]["ok"]["pending"] == 1
    everyone = (await client.get("/api/stats")).json()
    assert everyone["by_type"]["ok"]["pending"] == 3


@pytest.mark.parametrize("route", ["/api/jobs", "/api/stats"])
@pytest.mark.parametrize("tenant", ["", "x" * 201])
async def test_a_bad_tenant_filter_is_a_400(client: httpx2.AsyncClient, route: str, tenant: str) -> None:
    r = await client.get(route, params={"tenant": tenant})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_request"
    assert "tenant must be a non-empty string of at most 200 characters" in r.json()["message"]


async def test_a_bad_tenant_in_a_schedule_body_is_a_400_and_writes_nothing(
    scheduler_with_types: Scheduler, client: httpx2.AsyncClient
) -> None:
    for tenant in ("", 7):
        r = await client.post("/api/jobs", json={"type": "ok", "tenant": tenant})
        assert r.status_code == 400, r.text
    assert (await scheduler_with_types.list_jobs()).items == ()


def test_the_openapi_document_has_the_tenant_parameter_and_field() -> None:
    doc = document()
    for path in ("/jobs", "/stats"):
        names = [p["name"] for p in doc["paths"][path]["get"]["parameters"]]
        assert "tenant" in names, path
    schemas = doc["components"]["schemas"]
    assert "tenant" in schemas["Job"]["properties"]
    assert "tenant" in schemas["NewJob"]["properties"]


async def test_the_job_list_page_filters_by_tenant(
    scheduler_with_types: Scheduler, page_client: httpx2.AsyncClient
) -> None:
    s = scheduler_with_types
    mine = [await s.schedule("ok", tenant="acme") for _ in range(3)]
    await s.schedule("ok", tenant="globex")
    response = await page_client.get("/jobs", params={"tenant": "acme", "limit": "2"})
    assert response.status_code == 200
    assert listed_ids(response.text) == [mine[2], mine[1]]
    assert 'name="tenant" value="acme"' in response.text
    assert "tenant=acme" in response.text  # the next page keeps the filter
    assert "Retry all failed jobs" not in response.text  # bulk retry does not filter by tenant
    detail = await page_client.get(f"/jobs/{mine[0]}")
    assert "<dt>tenant</dt>" in detail.text
    bad = await page_client.get("/jobs", params={"tenant": "x" * 201})
    assert bad.status_code == 400
