"""``pgqueue prune``: drop the run log's expired days now (:meth:`Scheduler.prune`).

The maintenance leader does the same periodically; this is for an operator who wants it
now or with other durations (``--older-than 7d``). Durations are a number and a unit:
``s``, ``m``, ``h``, ``d`` or ``w`` (``90m``, ``36h``, ``14d``). ``--dry-run`` changes
nothing and says what a round would do. On a terminal a progress bar counts the
partitions as they are created and dropped; piped, the command prints its one line only.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from pgqueue._config import SCHEMA
from pgqueue._errors import ConfigError
from pgqueue._retention_api import PruneResult, prune_durations
from pgqueue._scheduler import Scheduler

from ._app import (
    DsnOption,
    JsonOption,
    SchemaOption,
    app,
    emit_json,
    parse_duration,
    progress_bar,
    run_with,
    stdout,
)

__all__ = ["prune"]


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _summary(result: PruneResult) -> str:
    would = "would " if result.dry_run else ""
    dropped = len(result.partitions_dropped)
    line = (
        f"{would}drop {dropped} partition{'' if dropped == 1 else 's'} "
        f"(runs before {_when(result.done_before)}, failed jobs' before {_when(result.failed_before)}), "
        f"{would}create {result.partitions_created}, {would}delete {result.rows_deleted} row"
        f"{'' if result.rows_deleted == 1 else 's'}"
    )
    if not result.dry_run:
        line = line.replace("drop ", "dropped ", 1).replace("create ", "created ", 1)
        line = line.replace("delete ", "deleted ", 1)
    if result.busy:
        line += f"; {len(result.busy)} skipped (locks busy), the next round does them"
    return line


@app.command()
def prune(  # noqa: PLR0917 - typer passes options by keyword
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", help="Drop the runs older than this, like 14d (default 14d)."),
    ] = None,
    failed_older_than: Annotated[
        str | None,
        typer.Option(
            "--failed-older-than",
            help="Keep the final runs of failed jobs this long, like 30d "
            "(default 30d, or --older-than if longer).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Change nothing; say what would be done.")
    ] = False,
    dsn: DsnOption = None,
    schema: SchemaOption = SCHEMA,
    as_json: JsonOption = False,
) -> None:
    """Drop the run log's expired days now (whole UTC days; the leader also does it periodically)."""
    keep = parse_duration("--older-than", older_than) if older_than is not None else None
    keep_failed = (
        parse_duration("--failed-older-than", failed_older_than) if failed_older_than is not None else None
    )
    try:  # checked before connecting, so that a bad pair is a usage error (exit 2)
        prune_durations(keep, keep_failed, ("--older-than", "--failed-older-than"))
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None

    async def work(scheduler: Scheduler) -> PruneResult:
        with progress_bar() as bar:
            task = bar.add_task("dry run" if dry_run else "pruning", total=None)
            return await scheduler.prune(
                keep,
                keep_failed,
                dry_run=dry_run,
                on_progress=lambda done, total: bar.update(task, completed=done, total=total),
            )

    result = run_with(dsn, schema, work)
    if as_json:
        emit_json(result)
    else:
        stdout.print(_summary(result), highlight=False)
