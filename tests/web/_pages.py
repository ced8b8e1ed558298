"""Helpers of the page tests (``test_pages.py``, ``test_page_actions.py``): job types, forms, rows.

The fixtures built on them (``scheduler_with_types``, ``page_client``) are in ``conftest.py``.
"""

from __future__ import annotations

import html
import re

import httpx2 as httpx
from pydantic import BaseModel

from pgqueue import Job, Scheduler
from tests.contract._helpers import run_until_ended

XSS = "<script>alert(1)</script>"
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


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


async def csrf(client: httpx.AsyncClient, path: str = "/jobs") -> str:
    """The CSRF field of a page's forms (the GET also sets the cookie it is signed for)."""
    response = await client.get(path)
    assert response.status_code == 200
    found = CSRF_FIELD.search(response.text)
    assert found is not None, "the page has no form with a CSRF field"
    return html.unescape(found.group(1))


async def post(client: httpx.AsyncClient, path: str, **fields: str) -> httpx.Response:
    """A page form's POST, with the CSRF field its page carries."""
    return await client.post(path, data={"csrf": await csrf(client), **fields})


def row_of(page: str, attr: str, value: object) -> str:
    """The ``<tr>`` of a table whose ``data-<attr>`` is ``value``."""
    found = re.search(rf'<tr data-{attr}="{re.escape(str(value))}">(.*?)</tr>', page, re.DOTALL)
    assert found is not None, f"no row with data-{attr}={value!r}"
    return found.group(1)


def listed_ids(page: str) -> list[int]:
    """The job ids of a job list page, in the order shown."""
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
