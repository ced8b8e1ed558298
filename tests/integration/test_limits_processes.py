"""Four worker processes on limited queues: the database records what ran or was held at once.

The worker processes run ``pgqueue worker tests.integration.test_limits_processes:app``:
this module is also their job module (``app``, below). Its ``nap`` handler sleeps
``params["ms"]`` and, before it returns, records ``(job_id, attempt)`` in ``finished``
through a pool of its own: from then on the run is over, though its job row stays held
until the worker's flush writes the result.

The concurrency limit bounds jobs running at once (slot leases: prefetched jobs are
claimed without running), so in that queue the handler itself records its start and its
end (``clock_timestamp()``, one clock) in ``runs``; a recorded interval lies inside the
run, and the most intervals that overlap is the most runs at once, or fewer.

The per-key limit counts held jobs: a statement trigger on the hot table writes, after
every UPDATE statement (each claim, put-back and mark), how many jobs of each customer are
held and not yet finished. Claims of that queue are serialised, so the largest sample is
the most that were ever held and unfinished at once. A row trigger records every claim's
claimed_at, the time the rate limit counts.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import anyio
import asyncpg
import pytest

from pgqueue import Job, Scheduler
from pgqueue.store.postgres.queries import quote_ident
from tests._support import ROOT_DIR, until

pytestmark = pytest.mark.pg

PROCESSES = 4
CONC, KEYED, RATED = "conc", "keyed", "rated"
CONC_LIMIT, RATE, RATE_PERIOD_S = 3, 10, 0.5
DEADLINE_S = 90.0

# -- the job module of the worker processes ------------------------------------------------

app = Scheduler(
    os.environ.get("PGQUEUE_DSN", "postgresql://unset"), schema=os.environ.get("PGQUEUE_SCHEMA", "pgqueue")
)
_pool: asyncpg.Pool | None = None
_pool_lock = asyncio.Lock()


async def _get_pool() -> asyncpg.Pool:
    global _pool  # noqa: PLW0603 - one lazily created pool per worker process
    async with _pool_lock:
        if _pool is None:
            _pool = await asyncpg.create_pool(os.environ["PGQUEUE_DSN"], min_size=0, max_size=5)
    return _pool


@app.job("nap", queue=CONC)
async def nap(job: Job) -> None:
    pool = await _get_pool()
    runs = f"{quote_ident(app.schema)}.runs"
    if job.queue == CONC:
        await pool.execute(
            f"INSERT INTO {runs} (job_id, attempt, started) VALUES ($1, $2, clock_timestamp())",
            job.id,
            job.attempt,
        )
    await anyio.sleep(job.params["ms"] / 1000)
    if job.queue == CONC:
        await pool.execute(
            f"UPDATE {runs} SET ended = clock_timestamp() WHERE job_id = $1 AND attempt = $2",
            job.id,
            job.attempt,
        )
    await pool.execute(
        f"INSERT INTO {quote_ident(app.schema)}.finished (job_id, attempt) VALUES ($1, $2)",
        job.id,
        job.attempt,
    )


# -- the test ------------------------------------------------------------------------------


def _recorders(schema: str) -> list[str]:
    s = quote_ident(schema)
    unfinished = f"""FROM {s}.jobs j WHERE j.queue = '{{q}}' AND j.worker_id > 0 AND NOT EXISTS (
                         SELECT 1 FROM {s}.finished f WHERE f.job_id = j.id AND f.attempt = j.attempt)"""
    return [
        f"CREATE TABLE {s}.finished (job_id bigint, attempt integer, PRIMARY KEY (job_id, attempt))",
        f"CREATE TABLE {s}.runs (job_id bigint, attempt integer, started timestamptz, ended timestamptz)",
        f"CREATE TABLE {s}.key_samples (sample bigint, customer text, n bigint)",
        f"CREATE SEQUENCE {s}.key_sample_ids",
        f"CREATE TABLE {s}.claims (queue text, job_id bigint, at timestamptz)",
        f"""CREATE FUNCTION {s}.sample() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO {s}.key_samples (sample, customer, n)
                SELECT i.id, c.customer, c.n
                FROM (SELECT nextval('{s}.key_sample_ids') AS id) AS i,
                     (SELECT j.params ->> 'customer' AS customer, count(*) AS n {unfinished.format(q=KEYED)}
                      GROUP BY 1) AS c;
                RETURN NULL;
            END $$""",
        f"CREATE TRIGGER sample AFTER UPDATE ON {s}.jobs FOR EACH STATEMENT EXECUTE FUNCTION {s}.sample()",
        f"""CREATE FUNCTION {s}.note_claim() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO {s}.claims (queue, job_id, at) VALUES (NEW.queue, NEW.id, NEW.claimed_at);
                RETURN NULL;
            END $$""",
        f"""CREATE TRIGGER note_claim AFTER UPDATE ON {s}.jobs FOR EACH ROW
            WHEN (OLD.worker_id IS NULL AND NEW.worker_id > 0) EXECUTE FUNCTION {s}.note_claim()""",
    ]


def _start(dsn: str, schema: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": schema}
    command = [
        sys.executable, "-m", "pgqueue", "worker", f"{__name__}:app",
        "-q", CONC, "-q", KEYED, "-q", RATED, "--concurrency", "5",
    ]  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, cwd=ROOT_DIR, stdout=out, stderr=subprocess.STDOUT)


async def test_four_worker_processes_keep_every_limit(
    dsn: str, scheduler: Scheduler, db: asyncpg.Connection, tmp_path: Path
) -> None:
    s, schema = scheduler, scheduler.schema
    q = quote_ident(schema)
    for statement in _recorders(schema):
        await db.execute(statement)
    await s.set_queue_limit(CONC, concurrency=CONC_LIMIT)
    await s.set_queue_limit(KEYED, per_key=1, key="customer")
    await s.set_queue_limit(RATED, rate=(RATE, RATE_PERIOD_S))
    s.register("nap", lambda job: None)
    total = 0
    batches: list[tuple[str, list[dict[str, object]]]] = [
        (CONC, [{"ms": 20} for _ in range(120)]),
        (KEYED, [{"ms": 20, "customer": c} for _ in range(30) for c in ("a", "b")]),
        (RATED, [{"ms": 1} for _ in range(4 * RATE)]),
    ]
    for queue, params in batches:
        total += len(await s.schedule_many("nap", params, queue=queue))
    procs = [_start(dsn, schema, tmp_path / f"worker-{i}.log") for i in range(PROCESSES)]
    try:

        async def all_finished() -> bool:
            return bool(await db.fetchval(f"SELECT count(*) FROM {q}.job_runs") == total)

        await until(all_finished, timeout=DEADLINE_S)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    logs = "\n".join((tmp_path / f"worker-{i}.log").read_text() for i in range(PROCESSES))
    succeeded = await db.fetchval(f"SELECT count(*) FROM {q}.job_runs WHERE outcome = 'succeeded'")
    assert succeeded == total, logs
    ran = await db.fetch(f"SELECT DISTINCT worker_id FROM {q}.job_runs")
    assert len(ran) > 1, logs  # the jobs were shared among the processes

    # Concurrency: never more than the limit running at once, and more than one at once.
    most = await db.fetchval(
        f"""SELECT max((SELECT count(*) FROM {q}.runs b WHERE b.started <= a.started AND b.ended > a.started))
            FROM {q}.runs a"""
    )
    assert await db.fetchval(f"SELECT count(*) FROM {q}.runs WHERE ended IS NOT NULL") == 120
    assert 1 < most <= CONC_LIMIT, most
    assert await db.fetchval(f"SELECT count(*) FROM {q}.queue_leases") == 0  # freed as each worker left

    # Per key: never two of one customer at once, and at some point both customers at once.
    per_key = await db.fetchval(f"SELECT max(n) FROM {q}.key_samples")
    assert per_key == 1
    both = await db.fetchval(
        f"SELECT count(*) FROM (SELECT sample FROM {q}.key_samples GROUP BY sample HAVING count(*) = 2) AS b"
    )
    assert both > 0

    # Rate: no window of the period holds more than RATE claims, and some window holds RATE.
    window = await db.fetchval(
        f"""SELECT max((SELECT count(*) FROM {q}.claims b
                        WHERE b.queue = a.queue AND b.at >= a.at AND b.at < a.at + make_interval(secs => $2)))
            FROM {q}.claims a WHERE a.queue = $1""",
        RATED,
        RATE_PERIOD_S,
    )
    assert window == RATE
    assert await db.fetchval(f"SELECT count(*) FROM {q}.claims WHERE queue = $1", RATED) == 4 * RATE
