"""The second worker process of workload (e): ``python -m pgqueue.bench._peer DSN CONCURRENCY``.

It talks to the parent over stdin/stdout, one line each way, so that its start-up
(interpreter, imports, pool) is outside the clock and both workers start together:

    child  -> "ready"                 pool open, job type registered
    parent -> "go"                    start the worker now
    parent -> "stop"                  shut down gracefully
    child  -> {"handled": ...}        one JSON line, then exit
"""

from __future__ import annotations

import json
import sys

import anyio

from pgqueue import Scheduler

from ._harness import DEDICATED_TURNS, JOB_TYPE, Tracker

__all__ = ["main"]


async def _readline() -> str:
    line: str = await anyio.to_thread.run_sync(sys.stdin.readline)
    return line.strip()


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def serve(dsn: str, concurrency: int) -> None:
    """Wait for "go", run a worker until "stop", report what it did."""
    tracker = Tracker()
    scheduler = Scheduler(dsn)
    scheduler.register(JOB_TYPE, tracker.handler)
    async with scheduler:
        worker = scheduler.worker(concurrency=concurrency, take_turns=DEDICATED_TURNS)
        _say("ready")
        if await _readline() != "go":
            return
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            await _readline()  # "stop", or end of input when the parent died
            await worker.shutdown()
    _say(json.dumps({"handled": tracker.count, "claims": worker.claims, "flushes": worker.flushes}))


def main() -> None:
    """Entry point: ``DSN CONCURRENCY`` on the command line."""
    anyio.run(serve, sys.argv[1], int(sys.argv[2]))


if __name__ == "__main__":
    main()
