"""``pgqueue workers [list]`` and ``pgqueue workers remove ID [--force]``: who serves the queues.

``pgqueue workers`` alone lists, as ``workers list`` does: the registered workers and pull
consumers, with their concurrency and the jobs each holds. ``remove`` drops a worker's row
(``Scheduler.remove_worker``) and prints one line; an unknown id, or a worker that holds
jobs without ``--force``, is one line on stderr and exit code 1, and nothing changes.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from pgqueue._config import SCHEMA
from pgqueue._errors import PgQueueError, WorkerHasActiveJobs
from pgqueue._jsonable import worker_json
from pgqueue._records import WorkerInfo
from pgqueue._scheduler import Scheduler

from ._app import DsnOption, JsonOption, SchemaOption, app, emit_json, run_with, stdout
from .jobs import _when

__all__ = ["workers_app"]

workers_app = typer.Typer(help="Registered workers and pull consumers: list them, or remove one.")
app.add_typer(workers_app, name="workers")


def _print_workers(dsn: str | None, schema: str, *, as_json: bool) -> None:
    found: list[WorkerInfo] = run_with(dsn, schema, Scheduler.list_workers)
    if as_json:
        emit_json([worker_json(w) for w in found])
        return
    table = Table(
        "id", "kind", "host", "pid", "queues", "concurrency", "jobs held", "started (UTC)", "heartbeat (UTC)"
    )
    for w in found:
        table.add_row(
            str(w.id),
            w.kind,
            w.hostname,
            str(w.pid),
            ", ".join(w.queues),
            "" if w.concurrency is None else str(w.concurrency),
            str(w.jobs_held),
            _when(w.started_at),
            _when(w.heartbeat),
        )
    stdout.print(table)


@workers_app.callback(invoke_without_command=True)
def workers(
    ctx: typer.Context, dsn: DsnOption = None, schema: SchemaOption = SCHEMA, as_json: JsonOption = False
) -> None:
    """List the registered workers (as `workers list`), or act on one with a subcommand."""
    if ctx.invoked_subcommand is None:
        _print_workers(dsn, schema, as_json=as_json)


@workers_app.command("list")
def list_workers(dsn: DsnOption = None, schema: SchemaOption = SCHEMA, as_json: JsonOption = False) -> None:
    """The registered workers: kind, host, pid, queues, concurrency, jobs held, last heartbeat."""
    _print_workers(dsn, schema, as_json=as_json)


@workers_app.command("remove")
def remove(
    worker_id: Annotated[int, typer.Argument(metavar="ID", help="The worker's id (see `pgqueue workers`).")],
    force: Annotated[
        bool, typer.Option("--force", help="Release the jobs it holds (as reaping does) and remove it.")
    ] = False,
    dsn: DsnOption = None,
    schema: SchemaOption = SCHEMA,
    as_json: JsonOption = False,
) -> None:
    """Remove a worker's row; refused while it holds jobs, unless --force releases them."""

    async def work(scheduler: Scheduler) -> int:
        return await scheduler.remove_worker(worker_id, force=force)

    try:
        released = run_with(dsn, schema, work)
    except WorkerHasActiveJobs as exc:
        raise PgQueueError(
            f"worker {worker_id} holds {exc.held} running job(s); --force releases them (as reaping does)"
        ) from None
    if as_json:
        emit_json({"id": worker_id, "removed": True, "jobs_released": released})
    else:
        stdout.print(f"worker {worker_id} removed; {released} job(s) released")
