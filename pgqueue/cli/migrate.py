"""``pgqueue migrate``: apply pending migrations to a schema, or print them for review."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pgqueue._config import SCHEMA
from pgqueue._scheduler import Scheduler

from ._app import DsnOption, SchemaOption, app, run_with

__all__ = ["migrate"]


@app.command()
def migrate(
    dsn: DsnOption = None,
    schema: SchemaOption = SCHEMA,
    print_sql: Annotated[
        bool,
        typer.Option(
            "--print-sql",
            help="Print the SQL of the pending migrations on stdout (one script for psql); apply nothing.",
        ),
    ] = False,
) -> None:
    """Apply pending migrations to the schema (idempotent)."""
    if print_sql:
        script = run_with(dsn, schema, Scheduler.migration_sql)
        if script:
            sys.stdout.write(script)
        else:
            typer.echo(f"schema {schema!r}: up to date, nothing to print", err=True)
        return
    applied = run_with(dsn, schema, Scheduler.migrate)
    typer.echo(f"schema {schema!r}: applied {applied}" if applied else f"schema {schema!r}: up to date")
