"""``pgqueue migrate``: apply pending migrations to a schema."""

from __future__ import annotations

import asyncio

import typer

from pgqueue._config import SCHEMA
from pgqueue._scheduler import Scheduler

from ._app import DsnOption, SchemaOption, app

__all__ = ["migrate"]


@app.command()
def migrate(dsn: DsnOption = None, schema: SchemaOption = SCHEMA) -> None:
    """Apply pending migrations to the schema (idempotent)."""
    if not dsn:
        raise typer.BadParameter("give --dsn or set PGQUEUE_DSN", param_hint="--dsn")

    async def go() -> list[int]:
        async with Scheduler(dsn, schema=schema) as s:
            return await s.migrate()

    applied = asyncio.run(go())
    typer.echo(f"schema {schema!r}: applied {applied}" if applied else f"schema {schema!r}: up to date")
