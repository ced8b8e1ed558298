"""Fixtures of the real-browser tests: headless Chromium on the dashboard served by uvicorn.

One browser per module (a launch costs far more than a test), a fresh schema, scheduler
and uvicorn server per test. Everything runs in the module's event loop: the browser
belongs to the loop that launched it, and the scheduler, its worker and the server share
one loop with the test so a test can schedule, run jobs and drive pages side by side.

The browser is Debian's chromium (no Playwright browser download); without it the tests
skip and say how to install it.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from pgqueue import Scheduler
from pgqueue.web import create_app
from tests._support import WAIT_S, drop_schema, until

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NO_CHROMIUM = "install Debian's chromium: apt-get install -y chromium"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip(NO_CHROMIUM)
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="module")
async def browser_scheduler(pg_server: str) -> AsyncIterator[Scheduler]:
    """A migrated scheduler on a fresh schema, in the module's loop (the ``scheduler``
    fixture lives in each test's own loop, which the module's browser cannot share)."""
    schema = "t_" + secrets.token_hex(6)
    s = Scheduler(pg_server, schema=schema)
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()
        await drop_schema(pg_server, schema)


class Dashboard:
    """The dashboard served over real HTTP on a loopback port: ``url(path)`` for the browser."""

    def __init__(self, server: uvicorn.Server, port: int) -> None:
        self.server = server
        self.port = port

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


async def serve(app: object) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    """Start uvicorn on a socket bound here (port 0: the kernel picks a free one, no race)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(app, http="h11", ws="none", lifespan="off", log_level="warning", access_log=False)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await until(lambda: server.started or task.done())
    if task.done():  # it failed to start: raise its error here
        await task
    return server, task, port


@pytest_asyncio.fixture(loop_scope="module")
async def dashboard(browser_scheduler: Scheduler) -> AsyncIterator[Dashboard]:
    server, task, port = await serve(create_app(browser_scheduler))
    try:
        yield Dashboard(server, port)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT_S)


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh browser context and page; console errors (a CSP refusal among them) fail the test."""
    context: BrowserContext = await browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_S * 1000)
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield tab
    finally:
        await context.close()
    assert errors == [], errors
