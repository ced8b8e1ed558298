"""Fixtures of the dashboard's tests: an async HTTP client on the app, over a real Scheduler.

The client speaks ASGI to the app in the test's own event loop (httpx's ASGITransport), so
a test can schedule, run a worker and call the API side by side on one PostgreSQL schema.
The page tests' client (``page_client``) is over a scheduler that knows their job types
(``_pages.register``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx2
import pytest
from starlette.types import ASGIApp

from pgqueue import Scheduler
from pgqueue.web import create_app
from tests.web._pages import register

BASE = "http://testserver"
JSON = {"Content-Type": "application/json"}

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx2.AsyncClient]]


@asynccontextmanager
async def client_for(app: ASGIApp, base: str = BASE) -> AsyncIterator[httpx2.AsyncClient]:
    """An HTTP client on ``app``; redirects are answers to check, not to follow."""
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url=base, follow_redirects=False) as client:
        yield client


@pytest.fixture
def make_client(scheduler: Scheduler) -> ClientFactory:
    """``async with make_client(token=..., read_only=...) as c``: a client on a fresh app."""

    def make(**options: object) -> AbstractAsyncContextManager[httpx2.AsyncClient]:
        return client_for(create_app(scheduler, **options))  # type: ignore[arg-type]

    return make


@pytest.fixture
async def client(make_client: ClientFactory) -> AsyncIterator[httpx2.AsyncClient]:
    """A client on an open app (no token, not read-only)."""
    async with make_client() as c:
        yield c


@pytest.fixture
def scheduler_with_types(scheduler: Scheduler) -> Scheduler:
    """The test's scheduler with the page tests' job types: ok, boom, order (``_pages.register``)."""
    register(scheduler)
    return scheduler


@pytest.fixture
async def page_client(scheduler_with_types: Scheduler) -> AsyncIterator[httpx2.AsyncClient]:
    """A client on an open app whose scheduler knows the page tests' job types."""
    async with client_for(create_app(scheduler_with_types)) as c:
        yield c
