"""The command-line app every command module registers on, and what the commands share.

The database: ``--dsn`` or ``PGQUEUE_DSN``; with neither, the embedded PostgreSQL whose
data is under ``./.pgqueue/pgdata`` (started on demand, and said on stderr). Read commands
print a rich table, or with ``--json`` one JSON document on stdout for scripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import sys
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Annotated, TypeVar

import orjson
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from pgqueue._scheduler import Scheduler

__all__ = [
    "AppOption",
    "DsnOption",
    "JsonOption",
    "SchemaOption",
    "acting_as",
    "app",
    "emit_json",
    "parse_duration",
    "progress_bar",
    "resolve_dsn",
    "run_with",
    "stdout",
]

T = TypeVar("T")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="pgqueue: an asyncio job runner on PostgreSQL. Errors print one line; "
    "add --debug (or set PGQUEUE_DEBUG=1) for the traceback.",
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 7 * 86_400.0}


def parse_duration(option: str, text: str) -> dt.timedelta:
    """``14d`` as a timedelta; anything else is a usage error naming ``option``."""
    m = _DURATION.match(text)
    if m is None:
        raise typer.BadParameter(
            f"{option} takes a number and a unit (s, m, h, d or w), like 14d or 36h; got {text!r}"
        )
    try:
        return dt.timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])
    except OverflowError:
        raise typer.BadParameter(f"{option} is too long: {text!r}") from None


DsnOption = Annotated[
    str | None,
    typer.Option(
        "--dsn",
        envvar="PGQUEUE_DSN",
        help="PostgreSQL DSN (default: $PGQUEUE_DSN, else the embedded server under ./.pgqueue/).",
    ),
]
SchemaOption = Annotated[
    str, typer.Option("--schema", envvar="PGQUEUE_SCHEMA", help="Schema holding pgqueue's tables.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout (for scripts).")]
AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        envvar="PGQUEUE_APP",
        help="Your application's Scheduler as module:attribute: its job types validate params.",
    ),
]

EMBEDDED_DATA = Path(".pgqueue") / "pgdata"  # relative to the working directory
stdout = Console(soft_wrap=True)


def resolve_dsn(dsn: str | None) -> str:
    """The DSN given, or the embedded server's (started on demand; said on stderr)."""
    if dsn:
        return dsn
    from pgqueue._devdb import embedded_dsn  # noqa: PLC0415 - only without a DSN

    data = Path.cwd() / EMBEDDED_DATA
    # platformdirs warns (also when the server stops at exit) when XDG_RUNTIME_DIR is unset:
    # not the user's business, and the CLI's stderr is one line per problem.
    warnings.filterwarnings("ignore", module="platformdirs")
    typer.echo(
        f"no --dsn or PGQUEUE_DSN: using the embedded PostgreSQL with data in {EMBEDDED_DATA}", err=True
    )
    return embedded_dsn(data)


def run_with(dsn: str | None, schema: str, work: Callable[[Scheduler], Awaitable[T]]) -> T:
    """Open a scheduler on the database, run ``work`` with it, close it; the result."""

    async def go() -> T:
        async with Scheduler(resolve_dsn(dsn), schema=schema) as scheduler:
            return await work(scheduler)

    return asyncio.run(go())


@contextlib.contextmanager
def acting_as(owner: Scheduler | None, scheduler: Scheduler) -> Iterator[Scheduler]:
    """The scheduler a command acts through: ``--app``'s, else ``scheduler``.

    The application's scheduler brings its job types (they check params and say which are
    suspendable) and is sent to the command's database for the block.
    """
    if owner is None:
        yield scheduler
        return
    with owner.using(scheduler):
        yield owner


def emit_json(value: object) -> None:
    """One JSON document on stdout (records, datetimes and enums as JSON)."""
    sys.stdout.write(
        orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n"
    )


def progress_bar() -> Progress:
    """A progress bar on stderr, drawn only when stderr is a terminal.

    Piped or redirected, it prints nothing: a script reading stdout (or stderr) gets the
    result alone. It is transient: the bar disappears when the work is done.
    """
    console = Console(stderr=True)
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    )
