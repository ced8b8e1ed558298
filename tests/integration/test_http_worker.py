"""The HTTP-only example worker and a Python Worker drain one queue together: each job runs once.

The dashboard is served by uvicorn on a loopback port (the example speaks real HTTP, token
and all); ``examples/http_worker.py``'s loop runs in a thread, the Python ``Worker`` in the
event loop, both on the same job type and queue. The run log must hold exactly one
succeeded run per job and nothing else, each handler must have seen its jobs once, and
both sides must have run some. The Python side is far faster (no HTTP round trips), so
it is paced: it starts at most ``RATIO`` jobs per job the HTTP side has run, until that
side has run ``SHARE``; the two sides then claim from the queue side by side throughout.
The Python Worker's small prefetch keeps jobs within the HTTP side's reach, so the pacing
cannot starve it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.from_thread
import asyncpg
import pytest
import uvicorn
from starlette.types import ASGIApp

from examples import http_worker
from pgqueue import Job, Scheduler
from pgqueue.web import create_app
from tests._support import WAIT_S, running, runs, until

pytestmark = pytest.mark.pg

JOBS = 1000
RATIO = 4  # the Python side starts at most this many jobs per job the HTTP side ran...
SHARE = 150  # ...until the HTTP side has run this many
TOKEN = "http-worker-test-token"


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """``app`` served by uvicorn on a loopback port the kernel picks; yields its URL."""
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every keep-alive answer waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(app, http="h11", ws="none", lifespan="off", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await until(lambda: server.started or task.done())
        if task.done():
            await task  # it failed to start: its error
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with anyio.fail_after(WAIT_S):
            await task


async def test_the_http_worker_and_a_python_worker_run_every_job_exactly_once(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    by_python: list[int] = []
    by_http: list[int] = []
    started = 0
    progressed = anyio.Event()  # set (and replaced) each time the HTTP side ran a job

    def http_progressed() -> None:
        nonlocal progressed
        progressed.set()
        progressed = anyio.Event()

    @scheduler.job("add", queue="shared")
    async def add(job: Job) -> int:
        nonlocal started
        started += 1
        while len(by_http) < min(started // RATIO, SHARE):
            await progressed.wait()
        by_python.append(job.params["i"])
        return int(job.params["a"] + job.params["b"])

    def add_over_http(params: http_worker.JSON) -> http_worker.JSON:
        by_http.append(params["i"])
        anyio.from_thread.run_sync(http_progressed)
        return http_worker.add(params)

    stop = threading.Event()

    def http_side(url: str) -> None:
        with http_worker.connect(url, TOKEN) as client:
            http_worker.work(client, {"add": add_over_http}, queues=["shared"], wait=1.0, stop=stop)

    with anyio.fail_after(120):
        async with serving(create_app(scheduler, token=TOKEN)) as url, anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, http_side, url)
            async with running(scheduler.worker(["shared"], concurrency=4, prefetch=8)):
                ids = await scheduler.schedule_many(
                    "add", [{"i": i, "a": i, "b": 1} for i in range(JOBS)], queue="shared"
                )

                async def all_ended() -> bool:
                    left = await db.fetchval(f'SELECT count(*) FROM "{scheduler.schema}".jobs')
                    return bool(left == 0)

                await until(all_ended, timeout=110)
            stop.set()  # the HTTP loop sees it after its current long-poll (1 s at most)

    assert sorted(by_python + by_http) == list(range(JOBS))  # each job ran once, by one side
    assert by_python
    assert len(by_http) >= SHARE
    logged = await runs(db, scheduler.schema)
    assert sorted(r["job_id"] for r in logged) == sorted(ids)  # one run per job, nothing else
    assert {r["outcome"] for r in logged} == {"succeeded"}
    assert len({r["worker_id"] for r in logged}) == 2  # the Worker and the HTTP side's consumer
    results = {r["job_id"]: r["result"] for r in logged}
    assert all(results[job_id] == str(i + 1) for i, job_id in enumerate(ids))
