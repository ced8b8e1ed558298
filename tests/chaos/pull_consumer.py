"""A pull consumer process of the chaos suite: ``python -m tests.chaos.pull_consumer``.

Leases ``pulled`` jobs with ``claim(10)`` (or a blocking ``dequeue`` when none are due),
records each execution in ``chaos_exec`` as the workers' handlers do, fails a job while
``job.attempt <= params["fail_times"]`` (with a short ``retry_at``), and finishes the rest,
all of a claim at once. Leases are short (``LEASE_S``), so a consumer the harness SIGKILLs
mid-lease frees its jobs within a second or so. Any error (the server restarting, a
connection terminated, a lease lost) is logged and the loop goes on; SIGTERM ends it with
exit code 0.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import signal
import sys

import anyio
import anyio.abc

from pgqueue import Lease, LeaseLost, Scheduler
from tests.chaos import app

LEASE_S = 1.0
CLAIM_N = 10
RETRY_IN = dt.timedelta(milliseconds=50)
_log = logging.getLogger("chaos.pull")


async def _settle(lease: Lease) -> None:
    await app.record(lease.job)
    if lease.attempt <= lease.job.params.get("fail_times", 0):
        await lease.fail(f"planned failure {lease.attempt}", retry_at=RETRY_IN)
    else:
        await lease.finish({"pid": os.getpid()})


async def consume(scheduler: Scheduler) -> None:
    """Lease and settle ``pulled`` jobs until cancelled."""
    while True:
        try:
            leases = await scheduler.claim(CLAIM_N, queues=[app.PULLED_QUEUE], lease=LEASE_S)
            if not leases:
                one = await scheduler.dequeue(queues=[app.PULLED_QUEUE], timeout=2, lease=LEASE_S)
                leases = [] if one is None else [one]
            results = await asyncio.gather(*(_settle(lease) for lease in leases), return_exceptions=True)
            for r in results:
                if isinstance(r, LeaseLost):
                    _log.warning("lease lost: %s", r)
                elif isinstance(r, BaseException):
                    raise r
        except Exception as exc:  # the chaos (a restart, a terminated connection): go on after a pause
            _log.warning("pull consumer error: %r", exc)
            await anyio.sleep(0.2)


async def main() -> None:
    scheduler = Scheduler(os.environ["PGQUEUE_DSN"], schema=app.SCHEMA)
    app.register(scheduler)
    async with anyio.create_task_group() as tg:

        async def stop_on_sigterm(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                task_status.started()
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    return

        await tg.start(stop_on_sigterm)
        _log.info(app.PULL_READY)  # the harness stops this process only after this line
        try:
            await consume(scheduler)
        finally:
            with anyio.CancelScope(shield=True):
                await scheduler.close()


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(process)d %(message)s")
    anyio.run(main)
