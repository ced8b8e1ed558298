"""``pgqueue migrate``: apply pending migrations to a schema."""

from __future__ import annotations

import typer

from pgqueue._config import SCHEMA
from pgqueue._scheduler import Scheduler

from ._app import DsnOption, SchemaOption, app, run_with

__all__ = ["migrate"]


@app.command()
def migrate(dsn: DsnOption = None, schema: SchemaOption = SCHEMA) -> None:
    """Apply pending migrations to the schema (idempotent)."""
    applied = run_with(dsn, schema, Scheduler.migrate)
    typer.echo(f"schema {schema!r}: applied {applied}" if applied else f"schema {schema!r}: up to date")
