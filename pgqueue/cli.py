"""The ``pgqueue`` command: ``worker``, ``migrate`` and ``bench``.

``pgqueue worker myapp.jobs:scheduler`` imports the module that registers the job types
(the same one the application schedules with) and runs a worker until SIGTERM or SIGINT:
the first signal stops gracefully (no new claims, running jobs finish, results are
written, the worker row is removed); a second signal stops at once (running jobs are
cancelled and released for another worker).

Errors print one line on stderr, ``error: <what> (<what to check>)``, and exit 1; usage
errors (a bad option, a missing DSN, a target that does not import) exit 2. No traceback
unless ``--debug`` is given (anywhere on the command line) or ``PGQUEUE_DEBUG=1`` is set.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, NoReturn, Protocol, TypeGuard

import anyio
import typer

from ._config import CONCURRENCY, DEAD_AFTER_S, HEARTBEAT_INTERVAL_S, POLL_INTERVAL_S, SHUTDOWN_GRACE_S
from ._errors import PgQueueError, describe, unwrap_group
from ._scheduler import Scheduler
from ._store import connect_error_hint

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


def load_scheduler(target: str) -> Scheduler:
    """Import ``module:attribute`` and check that it is a Scheduler."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise typer.BadParameter(f"expected module:attribute (like myapp.jobs:scheduler), got {target!r}")
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise typer.BadParameter(f"cannot import {module_name!r}: {exc}") from exc
    obj = getattr(module, attr, None)
    if not isinstance(obj, Scheduler):
        raise typer.BadParameter(f"{target} is {type(obj).__name__}, not a pgqueue.Scheduler")
    return obj


@app.command()
def migrate(dsn: DsnOption = None, schema: SchemaOption = "pgqueue") -> None:
    """Apply pending migrations to the schema (idempotent)."""
    if not dsn:
        raise typer.BadParameter("give --dsn or set PGQUEUE_DSN", param_hint="--dsn")

    async def go() -> list[int]:
        async with Scheduler(dsn, schema=schema) as s:
            return await s.migrate()

    applied = asyncio.run(go())
    typer.echo(f"schema {schema!r}: applied {applied}" if applied else f"schema {schema!r}: up to date")


@app.command()
def worker(  # noqa: PLR0917 - typer maps each option to a parameter
    target: Annotated[str, typer.Argument(help="The Scheduler to serve, as module:attribute.")],
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", "-q", help="Queue to serve (repeatable; default: all registered)."),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Jobs run at the same time.")] = CONCURRENCY,
    prefetch: Annotated[int | None, typer.Option(min=1, help="Most jobs held claimed.")] = None,
    poll_interval: Annotated[
        float, typer.Option(min=0.001, help="Backstop poll, seconds.")
    ] = POLL_INTERVAL_S,
    heartbeat_interval: Annotated[
        float, typer.Option(min=0.001, help="Seconds between heartbeats.")
    ] = HEARTBEAT_INTERVAL_S,
    dead_after: Annotated[
        float, typer.Option(min=0.003, help="Seconds of silence after which a worker is reaped.")
    ] = DEAD_AFTER_S,
    shutdown_grace: Annotated[
        float,
        typer.Option(min=0.001, help="Seconds running jobs get on SIGTERM before they are interrupted."),
    ] = SHUTDOWN_GRACE_S,
    listen: Annotated[
        bool, typer.Option(help="LISTEN for wake-ups (--no-listen polls only, for PgBouncer).")
    ] = True,
) -> None:
    """Run a worker until SIGTERM/SIGINT (a second signal stops at once)."""
    scheduler = load_scheduler(target)
    try:
        w = scheduler.worker(
            queues=queue or None,
            concurrency=concurrency,
            prefetch=prefetch,
            poll_interval=poll_interval,
            heartbeat_interval=heartbeat_interval,
            dead_after=dead_after,
            shutdown_grace=shutdown_grace,
            listen=listen,
        )
    except PgQueueError as exc:
        raise typer.BadParameter(str(exc)) from exc

    async def go() -> None:
        async with anyio.create_task_group() as tg:

            async def on_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    graceful = False
                    async for _ in signals:
                        if graceful:
                            tg.cancel_scope.cancel()  # second signal: hard stop
                            return
                        graceful = True
                        tg.start_soon(w.shutdown)

            tg.start_soon(on_signals)
            await w.run()
            tg.cancel_scope.cancel()
        await scheduler.close()

    asyncio.run(go())


@app.command()
def bench(
    *,
    jobs: Annotated[
        int, typer.Option("--jobs", "-n", min=1, envvar="BENCH_N", help="Jobs per drain.")
    ] = 20_000,
    concurrency: Annotated[
        list[str] | None,
        typer.Option(
            "--concurrency",
            "-c",
            envvar="BENCH_CONCURRENCY",
            help="Worker concurrency of the drains (repeatable or comma-separated; default 10,50).",
        ),
    ] = None,
    phases: Annotated[
        str,
        typer.Option(
            envvar="BENCH_PHASES", help="Comma-separated: enqueue, drain, latency, two_workers, big."
        ),
    ] = "enqueue,drain,latency,two_workers",
    big: Annotated[
        bool, typer.Option("--big", envvar="BENCH_BIG", help="Add the 1,000,000-job backlog drain (minutes).")
    ] = False,
    big_jobs: Annotated[
        int, typer.Option("--big-jobs", min=1, envvar="BENCH_BIG_N", help="Backlog of --big.")
    ] = 1_000_000,
    progress: Annotated[bool, typer.Option(help="Progress bars on stderr for long phases.")] = True,
    dsn: Annotated[
        str | None,
        typer.Option(
            "--dsn", envvar="BENCH_DSN", help="Database to (re)create; name must start with bench_."
        ),
    ] = None,
) -> None:
    """Benchmark enqueue, drain, latency and cost; one JSON line on stdout, a table on stderr.

    Without --dsn: 127.0.0.1:5432 when it answers, else an embedded PostgreSQL.
    """
    import dataclasses  # noqa: PLC0415 - the benchmark is not needed to run jobs

    from .bench import Params, run_bench  # noqa: PLC0415

    try:
        levels = [int(c) for item in concurrency or ["10,50"] for c in item.replace(" ", ",").split(",") if c]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--concurrency") from exc
    params = dataclasses.replace(
        Params(), n=jobs, concurrencies=tuple(levels), big_n=big_jobs, progress=progress
    )
    try:
        run_bench(params=params, dsn=dsn, phases=[p.strip() for p in phases.split(",") if p.strip()], big=big)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


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
