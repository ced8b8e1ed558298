"""The job module of the chaos suite's worker processes: `pgqueue worker tests.chaos.app:scheduler`.

Reads ``PGQUEUE_DSN`` and ``PGQUEUE_SCHEMA`` like ``tests/cli_app.py``. Every handler first
records its execution, ``(job_id, attempt, pid)``, in ``<schema>.chaos_exec`` through a pool
of its own (application_name ``chaos-app``, so the harness never terminates it as one of
pgqueue's connections), then does its work. The harness compares that side-effect log with
``job_runs``: which attempts really ran, and how often.

Types (all in the default queue, all retried, and with attempts to spare for crashes):

- ``fast``: nothing.
- ``slow``: sleeps ``params["ms"]`` milliseconds.
- ``flaky``: raises while ``job.attempt <= params["fail_times"]`` (after recording the run).
- ``later``: nothing; the harness schedules it a few seconds ahead.
- ``capped`` (queue ``capped``, which the harness limits to ``CAPPED_LIMIT`` running jobs
  across all workers): records its start and end in ``chaos_capped`` around a sleep of a
  few milliseconds, so the limit is reached and the harness can count overlaps.
- ``pulled`` (queue ``pulled``, which no worker serves): declared for the pull consumer
  processes (``tests/chaos/pull_consumer.py``), which record it, fail it while
  ``job.attempt <= params["fail_times"]`` and finish it otherwise.
- ``tick``: nothing; declared periodic every second (``missed="latest"``) on the workers'
  scheduler only, so the maintenance leader enqueues it; the harness checks one job per tick.

With ``CHAOS_WORKER_LOG=1`` (the harness sets it) pgqueue's events go to stderr with their
fields, so each worker's log file shows claims, flush failures, reaps and reconnects.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import sys

import anyio
import asyncpg

from pgqueue import Job, LinearBackoff, Scheduler

SCHEMA = os.environ.get("PGQUEUE_SCHEMA", "pgqueue")
MAX_ATTEMPTS = 20  # far more than the kills any job can meet
RETRY = LinearBackoff(5, 0.05)
FLAKY_RETRY = LinearBackoff(3, 0.05)
EXEC_TABLE = "chaos_exec"
CAPPED_QUEUE = "capped"
PULL_READY = "pull consumer ready"  # a pull consumer's log line once it handles SIGTERM
CAPPED_LIMIT = 3
PULLED_QUEUE = "pulled"
CAPPED_TABLE = "chaos_capped"  # each capped run's start and end, for the harness's overlap check
TICK_EVERY = dt.timedelta(seconds=1)
APP_NAME = "chaos-app"

_pool: asyncpg.Pool | None = None
_pool_lock = asyncio.Lock()


class FlakyError(RuntimeError):
    """The planned failure of a ``flaky`` run."""


async def _exec_pool() -> asyncpg.Pool:
    """This process's pool for the side-effect log, created on first use."""
    global _pool  # noqa: PLW0603 - one lazily created pool per worker process
    if _pool is None:
        async with _pool_lock:
            if _pool is None:
                _pool = await asyncpg.create_pool(
                    os.environ["PGQUEUE_DSN"],
                    min_size=0,
                    max_size=5,
                    # A fast restart (the only one the harness does) flushes the WAL first, so
                    # an asynchronous commit loses nothing here and saves an fsync per job.
                    server_settings={"application_name": APP_NAME, "synchronous_commit": "off"},
                )
    return _pool


async def record(job: Job) -> None:
    """Log this execution. A failure (the server restarting) fails the run, which is retried."""
    pool = await _exec_pool()
    await pool.execute(
        f'INSERT INTO "{SCHEMA}".{EXEC_TABLE} (job_id, attempt, pid) VALUES ($1, $2, $3)',
        job.id,
        job.attempt,
        os.getpid(),
    )


async def fast(job: Job) -> None:
    await record(job)


async def slow(job: Job) -> None:
    await record(job)
    await anyio.sleep(job.params["ms"] / 1000)


async def flaky(job: Job) -> None:
    await record(job)
    if job.attempt <= job.params["fail_times"]:
        raise FlakyError(f"planned failure {job.attempt} of {job.params['fail_times']}")


async def later(job: Job) -> None:
    await record(job)


async def capped(job: Job) -> None:
    await record(job)
    pool = await _exec_pool()
    table = f'"{SCHEMA}".{CAPPED_TABLE}'
    await pool.execute(
        f"INSERT INTO {table} (job_id, attempt, started) VALUES ($1, $2, clock_timestamp())",
        job.id,
        job.attempt,
    )
    await anyio.sleep(0.005)
    await pool.execute(
        f"UPDATE {table} SET ended = clock_timestamp() WHERE job_id = $1 AND attempt = $2",
        job.id,
        job.attempt,
    )


async def tick(job: Job) -> None:
    await record(job)


def register(s: Scheduler) -> None:
    """Register the chaos job types on ``s`` (the workers' scheduler and the harness's)."""
    s.register("fast", fast, retry=RETRY, max_attempts=MAX_ATTEMPTS)
    s.register("slow", slow, retry=RETRY, max_attempts=MAX_ATTEMPTS)
    s.register("flaky", flaky, retry=FLAKY_RETRY, max_attempts=MAX_ATTEMPTS)
    s.register("later", later, retry=RETRY, max_attempts=MAX_ATTEMPTS)
    s.register("capped", capped, queue=CAPPED_QUEUE, retry=RETRY, max_attempts=MAX_ATTEMPTS)
    s.register("tick", tick, retry=RETRY, max_attempts=MAX_ATTEMPTS)
    s.declare("pulled", queue=PULLED_QUEUE, retry=RETRY, max_attempts=MAX_ATTEMPTS)


class _FieldsFormatter(logging.Formatter):
    """Message plus the structured fields pgqueue passes as ``extra``."""

    _standard = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        fields = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in self._standard)
        return f"{base} {fields}" if fields else base


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_FieldsFormatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
    log = logging.getLogger("pgqueue")
    log.addHandler(handler)
    log.setLevel(logging.INFO)


if os.environ.get("CHAOS_WORKER_LOG") == "1":
    _configure_logging()

scheduler = Scheduler(os.environ.get("PGQUEUE_DSN", "postgresql://unset"), schema=SCHEMA)
register(scheduler)
scheduler.add_periodic("tick", every=TICK_EVERY, job="tick", missed="latest")
