"""A job module for the CLI tests: `pgqueue worker tests.cli_app:scheduler`."""

from __future__ import annotations

import asyncio
import os

import anyio

from pgqueue import Job, Scheduler

scheduler = Scheduler(
    os.environ.get("PGQUEUE_DSN", "postgresql://unset"), schema=os.environ.get("PGQUEUE_SCHEMA", "pgqueue")
)


@scheduler.job("echo")
async def echo(job: Job) -> object:
    return job.params


@scheduler.job("hang")
async def hang(job: Job) -> None:
    await anyio.sleep_forever()


@scheduler.job("hang_first_run")
async def hang_first_run(job: Job) -> str:
    if job.attempt == 1:
        await anyio.sleep_forever()
    return "second run"


not_a_scheduler = 42


@scheduler.job("exit3")
async def exit3(job: Job) -> None:
    raise SystemExit(3)


@scheduler.job("interrupt")
def interrupt(job: Job) -> None:
    raise KeyboardInterrupt


@scheduler.job("cancelled_by_someone")
async def cancelled_by_someone(job: Job) -> None:
    raise asyncio.CancelledError


@scheduler.job("boom")
async def boom(job: Job) -> None:
    raise ValueError("boom")


@scheduler.job("resumable", suspendable=True)
async def resumable(job: Job) -> None:
    await job.checkpoint(None)
