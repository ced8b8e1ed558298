"""A Starlette app that schedules jobs from a request and runs a worker in its lifespan.

Run it:  PGQUEUE_DSN=postgresql://… uvicorn examples.web_app:app
Then:    curl -X POST localhost:8000/signup -d '{"email": "ada@example.com"}'

The worker shares the web server's event loop: it starts with the app (``tg.start`` fails
the startup if the database is unreachable or not migrated) and stops gracefully with it
(running jobs finish, results are written). For heavy or blocking jobs, run
``pgqueue worker examples.web_app:scheduler`` as its own process instead: the same module
registers the same job types.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pgqueue import Job, LinearBackoff, Scheduler, UnknownJobTypeError

scheduler = Scheduler(os.environ["PGQUEUE_DSN"], schema=os.environ.get("PGQUEUE_SCHEMA", "pgqueue"))
OUTBOX: list[str] = []  # stands in for an e-mail provider


@scheduler.job("send_welcome_email", queue="emails", retry=LinearBackoff(max_retries=5, base_delay=2.0))
async def send_welcome_email(job: Job) -> dict[str, str]:
    OUTBOX.append(job.params["email"])
    return {"delivered_to": job.params["email"]}


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    await scheduler.migrate()
    worker = scheduler.worker(queues=["emails"], concurrency=10)
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        yield
        await worker.shutdown()
    await scheduler.close()


async def signup(request: Request) -> JSONResponse:
    body = await request.json()
    email = body.get("email") if isinstance(body, dict) else None
    if not isinstance(email, str) or "@" not in email:
        return JSONResponse({"error": "body must be {'email': '<address>'}"}, status_code=422)
    try:
        job_id = await scheduler.schedule("send_welcome_email", {"email": email})
    except (UnknownJobTypeError, TypeError) as exc:  # pragma: no cover - programming errors
        return JSONResponse({"error": str(exc)}, status_code=500)
    return JSONResponse({"job_id": job_id}, status_code=202)


async def outbox(_request: Request) -> JSONResponse:
    return JSONResponse({"sent": OUTBOX})


app = Starlette(
    routes=[Route("/signup", signup, methods=["POST"]), Route("/outbox", outbox)], lifespan=lifespan
)
