"""An application with periodic declarations, for `pgqueue periodic --app` in the CLI tests."""

from __future__ import annotations

import datetime as dt
import os

from pgqueue import Job, Scheduler

scheduler = Scheduler(
    os.environ.get("PGQUEUE_DSN", "postgresql://unset"), schema=os.environ.get("PGQUEUE_SCHEMA", "pgqueue")
)


@scheduler.periodic("0 0 1 1 *", queue="yearly")  # next fire: the next New Year, UTC
async def new_year(job: Job) -> None:
    return None


@scheduler.job("report")
async def report(job: Job) -> None:
    return None


scheduler.add_periodic("hourly_report", every=dt.timedelta(hours=1), job="report", params={"kind": "hourly"})
