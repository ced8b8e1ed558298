"""The command-line app every command module registers on, and the options they share."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["DsnOption", "SchemaOption", "app"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="pgqueue: an asyncio job runner on PostgreSQL. Errors print one line; "
    "add --debug (or set PGQUEUE_DEBUG=1) for the traceback.",
)

DsnOption = Annotated[
    str | None, typer.Option("--dsn", envvar="PGQUEUE_DSN", help="PostgreSQL DSN (default: $PGQUEUE_DSN).")
]
SchemaOption = Annotated[
    str, typer.Option("--schema", envvar="PGQUEUE_SCHEMA", help="Schema holding pgqueue's tables.")
]
