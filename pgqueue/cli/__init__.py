"""The ``pgqueue`` command: one module per command family.

``migrate``, ``worker``, ``jobs`` (with ``schedule``; ``bulk``: retry-failed, cancel-all),
``overview`` (``stats``, ``queues``, ``types``), ``workers`` (list, remove), ``periodic``,
``limits``, ``prune``, ``dashboard`` and ``bench``.

Errors print one line on stderr, ``error: <what> (<what to check>)``, and exit 1; usage
errors (a bad option, a missing DSN, a target that does not import) exit 2. No traceback
unless ``--debug`` is given (anywhere on the command line) or ``PGQUEUE_DEBUG=1`` is set.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn, Protocol, TypeGuard

import typer

from pgqueue._errors import PgQueueError, describe, unwrap_group
from pgqueue.store.postgres import connect_error_hint

from . import bench, bulk, dashboard, jobs, limits, migrate, overview, periodic, prune, worker, workers
from ._app import app

__all__ = [
    "app",
    "bench",
    "bulk",
    "dashboard",
    "jobs",
    "limits",
    "main",
    "migrate",
    "overview",
    "periodic",
    "prune",
    "worker",
    "workers",
]


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point: one line per error and an exit code, no traceback by default."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("PGQUEUE_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    try:
        code = app(args=args, prog_name="pgqueue", standalone_mode=False)
    except BaseException as raised:  # noqa: BLE001 - the boundary: every error becomes one line
        exc = unwrap_group(raised)
        if isinstance(exc, SystemExit):
            raise exc from None
        if isinstance(exc, KeyboardInterrupt):
            _fail("interrupted", 130, exc, debug=debug)
        if _is_usage_error(exc):
            if not exc.format_message().strip():  # `pgqueue` alone: typer has printed the help
                sys.exit(exc.exit_code)
            _fail(exc.format_message(), 2, raised, debug=debug)
        _fail(_explain(exc), 1, exc, debug=debug)
    sys.exit(code if isinstance(code, int) else 0)


class _UsageError(Protocol):
    """What pgqueue uses of click's ``UsageError`` (typer vendors click: no public import)."""

    exit_code: int

    def format_message(self) -> str: ...


def _is_usage_error(exc: BaseException) -> TypeGuard[_UsageError]:
    """A click usage error: a bad option, a missing argument, a target that does not import."""
    return callable(getattr(exc, "format_message", None)) and isinstance(getattr(exc, "exit_code", None), int)


def _explain(exc: BaseException) -> str:
    """The message of an error that is not a usage error, with what to check."""
    if isinstance(exc, PgQueueError):
        return str(exc)
    hint = connect_error_hint(exc)
    if hint is not None:
        return f"cannot connect to the database: {exc} ({hint})"
    if isinstance(exc, OSError):
        return f"cannot connect to the database: {describe(exc)} (is it up, and is the DSN's host right?)"
    return f"{describe(exc)} (run with --debug for the traceback)"


def _fail(message: str, code: int, exc: BaseException, *, debug: bool) -> NoReturn:
    if debug:
        traceback.print_exception(exc)
    typer.echo("error: " + " ".join(message.split()), err=True)
    sys.exit(code)
