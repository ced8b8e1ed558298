"""``pgqueue worker module:scheduler``: run a worker until SIGTERM or SIGINT.

It imports the module that registers the job types (the same one the application
schedules with). The first signal stops gracefully (no new claims, running jobs finish,
results are written, the worker row is removed); a second signal stops at once (running
jobs are cancelled and released for another worker).

The options are generated from :class:`~pgqueue._config.WorkerConfig`: every field of a
plain type (int, float, bool) is an option named after it, with its attribute docstring
as help, so a new worker option is one field in ``_config.py``. An option left out takes
the config's default, derived as ``Scheduler.worker`` derives it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import inspect
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from pgqueue._config import WorkerConfig, field_docs
from pgqueue._errors import PgQueueError
from pgqueue._scheduler import Scheduler

from ._app import app

__all__ = ["config_options", "load_scheduler", "worker"]

_PLAIN_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool}


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


def config_options(config: type[WorkerConfig]) -> list[inspect.Parameter]:
    """One keyword-only typer option per plain-typed field of ``config`` (default None: not given)."""
    docs = field_docs(config)
    params: list[inspect.Parameter] = []
    for f in dataclasses.fields(config):
        kind = _PLAIN_TYPES.get(str(f.type))
        if kind is None:  # queues has its own option; callables cannot come from a command line
            continue
        flag = "--" + f.name.replace("_", "-")
        decl = f"{flag}/--no-{flag[2:]}" if kind is bool else flag
        help_text = docs.get(f.name, "").replace("``", "") or None
        option = typer.Option(decl, help=help_text, show_default=str(f.default))
        annotation: Any = Annotated[kind | None, option]
        params.append(
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        )
    return params


def _with_config_options(fn: Callable[..., None]) -> Callable[..., None]:
    """Give ``fn`` (which takes ``**options``) the generated options in its signature, for typer."""
    sig = inspect.signature(fn, eval_str=True)  # typer reads a given __signature__ as is
    fixed = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    fn.__signature__ = sig.replace(parameters=[*fixed, *config_options(WorkerConfig)])  # type: ignore[attr-defined]
    return fn


@app.command()
@_with_config_options
def worker(
    target: Annotated[str, typer.Argument(help="The Scheduler to serve, as module:attribute.")],
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", "-q", help="Queue to serve (repeatable; default: all registered)."),
    ] = None,
    **options: object,
) -> None:
    """Run a worker until SIGTERM/SIGINT (a second signal stops at once)."""
    scheduler = load_scheduler(target)
    try:
        w = scheduler.worker(queues=queue or None, **options)
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
