"""``pgqueue periodic``: periodic declarations, their next fire times and last outcomes.

Without ``--app`` the command lists the database's rows (every declaration some process
wrote), with the next tick of each stored schedule. With ``--app`` it lists the
application's declarations (next fire times by their policies), and marks the rows that
it does not declare. ``pgqueue periodic remove NAME`` forgets a row.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from pgqueue._config import SCHEMA
from pgqueue._scheduler import Scheduler
from pgqueue.periodic.records import PeriodicInfo, periodic_json

from ._app import AppOption, DsnOption, JsonOption, SchemaOption, acting_as, app, emit_json, run_with, stdout
from .jobs import _when
from .worker import load_scheduler

__all__ = ["periodic_app"]

periodic_app = typer.Typer(help="Periodic jobs: schedules, next fire times, last outcomes; or remove one.")
app.add_typer(periodic_app, name="periodic")


@periodic_app.callback(invoke_without_command=True)
def periodic(
    ctx: typer.Context,
    app_target: AppOption = None,
    dsn: DsnOption = None,
    schema: SchemaOption = SCHEMA,
    as_json: JsonOption = False,
) -> None:
    """List periodic declarations (with --app, your application's) and how their last tick went."""
    if ctx.invoked_subcommand is not None:
        return
    owner = load_scheduler(app_target) if app_target else None

    async def work(scheduler: Scheduler) -> list[PeriodicInfo]:
        with acting_as(owner, scheduler) as target:
            return await target.list_periodic()

    found = run_with(dsn, schema, work)
    if as_json:
        emit_json([periodic_json(p) for p in found])
        return
    if not found:
        stdout.print("no periodic declarations" + ("" if owner else " in the database (try --app)"))
        return
    table = Table("name", "schedule", "type", "queue", "next (UTC)", "last tick (UTC)", "last job", "outcome")
    for p in found:
        table.add_row(
            p.name if p.declared or owner is None else f"{p.name} (not declared)",
            p.schedule,
            p.type,
            p.queue,
            _when(p.next_fire_at),
            _when(p.last_tick),
            "" if p.last_job_id is None else str(p.last_job_id),
            p.last_outcome or "",
        )
    stdout.print(table)


@periodic_app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="The declaration's name.")],
    dsn: DsnOption = None,
    schema: SchemaOption = SCHEMA,
    as_json: JsonOption = False,
) -> None:
    """Forget a declaration's row and last tick (a process still declaring it writes it again)."""

    async def work(scheduler: Scheduler) -> bool:
        return await scheduler.remove_periodic(name)

    removed = run_with(dsn, schema, work)
    if as_json:
        emit_json({"name": name, "removed": removed})
    elif removed:
        stdout.print(f"periodic {name!r} removed")
    else:
        typer.echo(f"error: no periodic {name!r} in the database: nothing to remove", err=True)
        raise typer.Exit(1)
