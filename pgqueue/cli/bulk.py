"""``pgqueue jobs retry-failed`` and ``pgqueue jobs cancel-all``: act on many jobs at once.

Both print one line (or one JSON document) when done. On a terminal a progress bar shows
the work as it goes (see ``_app.progress_bar``); piped, they stay quiet.

``retry-failed`` lists the failed jobs first, then retries them in chunks of
:data:`RETRY_CHUNK`, each chunk one statement (``pgqueue._bulk``, which the dashboard's
bulk retry shares): a large backlog is not one long transaction, and the bar moves per
chunk. A job that another client retried in between is skipped.
``cancel-all`` is :meth:`Scheduler.cancel_many`: one transaction that takes every live job
of the queue or type, so no job is half-cancelled; its bar is a spinner.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pgqueue._bulk import RETRY_CHUNK, failed_ids, retry_ids
from pgqueue._config import SCHEMA
from pgqueue._records import CancelCounts
from pgqueue._scheduler import Scheduler

from ._app import DsnOption, JsonOption, SchemaOption, emit_json, progress_bar, run_with, stdout
from .jobs import jobs_app

__all__ = ["RETRY_CHUNK", "cancel_all", "retry_failed"]

QueueFilter = Annotated[str | None, typer.Option("--queue", help="Only this queue.")]
TypeFilter = Annotated[str | None, typer.Option("--type", help="Only this job type.")]


@jobs_app.command("retry-failed")
def retry_failed(
    queue: QueueFilter = None,
    type_: TypeFilter = None,
    dsn: DsnOption = None,
    schema: SchemaOption = SCHEMA,
    as_json: JsonOption = False,
) -> None:
    """Run every failed job (of --queue and/or --type, else all) again, under its id."""

    async def work(scheduler: Scheduler) -> list[int]:
        with progress_bar() as bar:
            finding = bar.add_task("finding failed jobs", total=None)
            ids = await failed_ids(
                scheduler, queue=queue, type_=type_, on_page=lambda n: bar.update(finding, completed=n)
            )
        with progress_bar() as bar:
            retrying = bar.add_task("retrying", total=len(ids))
            return await retry_ids(
                scheduler,
                ids,
                queue=queue,
                type_=type_,
                chunk=RETRY_CHUNK,  # this module's, read now: a test makes it small
                on_chunk=lambda n: bar.advance(retrying, n),
            )

    retried = run_with(dsn, schema, work)
    if as_json:
        emit_json({"retried": len(retried), "ids": retried})
    else:
        stdout.print(f"retried {len(retried)} failed job{'' if len(retried) == 1 else 's'}")


@jobs_app.command("cancel-all")
def cancel_all(
    queue: QueueFilter = None,
    type_: TypeFilter = None,
    dsn: DsnOption = None,
    schema: SchemaOption = SCHEMA,
    as_json: JsonOption = False,
) -> None:
    """Cancel every live job of --queue and/or --type (one at least), in one transaction."""
    if queue is None and type_ is None:
        raise typer.BadParameter("give --queue or --type (or both): cancel-all never means every job")

    async def work(scheduler: Scheduler) -> CancelCounts:
        with progress_bar() as bar:
            bar.add_task("cancelling", total=None)
            return await scheduler.cancel_many(queue=queue, type=type_)

    counts = run_with(dsn, schema, work)
    if as_json:
        emit_json({"cancelled": counts.cancelled, "cancelling": counts.cancelling})
    else:
        stdout.print(
            f"cancelled {counts.cancelled} waiting job(s); "
            f"asked the workers of {counts.cancelling} running job(s) to stop them"
        )
