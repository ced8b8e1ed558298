"""``pgqueue worker module:scheduler``: run a worker until SIGTERM or SIGINT.

It imports the module that registers the job types (the same one the application
schedules with). The first signal stops gracefully (no new claims, running jobs finish,
results are written, the worker row is removed); a second signal stops at once (running
jobs are cancelled and released for another worker).

The options are generated from :class:`~pgqueue._config.WorkerConfig`: every field of a
plain type (int, float, bool) is an option named after it, with its attribute docstring
as help, so a new worker option is one field in ``_config.py``. An option left out takes
the config's default, derived as ``Scheduler.worker`` derives it.

``--metrics-port`` serves Prometheus metrics (``/metrics``) on the worker's event loop; it
needs the ``pgqueue[metrics]`` extra and is the only path here that imports
prometheus-client. It uses the scheduler's :class:`~pgqueue.metrics.Metrics` when the
module gave it one, so both report into one registry.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import importlib
import inspect
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import typer

from pgqueue._config import DERIVED_DEFAULTS, WorkerConfig, field_docs
from pgqueue._errors import PgQueueError
from pgqueue._scheduler import Scheduler

from ._app import app, parse_duration

if TYPE_CHECKING:  # pgqueue.metrics imports prometheus-client, an optional extra
    from pgqueue.metrics import Metrics

__all__ = ["config_options", "load_scheduler", "worker"]

_PLAIN_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool}
_DURATION_TYPE = "float | dt.timedelta"  # a duration option: seconds or a timedelta in Python


def _days(default: object) -> str:
    return f"{default / 86_400:g}d" if isinstance(default, float) else str(default)


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
        flag = "--" + f.name.replace("_", "-")
        help_text = docs.get(f.name, "").replace("``", "") or None
        annotation: Any
        if str(f.type) == _DURATION_TYPE:  # retention: "14d", "36h"…
            option = typer.Option(
                flag,
                help=help_text,
                show_default=_days(f.default),
                parser=functools.partial(parse_duration, flag),
            )
            annotation = Annotated[dt.timedelta | None, option]
        else:
            kind = _PLAIN_TYPES.get(str(f.type))
            if kind is None:  # queues has its own option; callables cannot come from a command line
                continue
            decl = f"{flag}/--no-{flag[2:]}" if kind is bool else flag
            shown = DERIVED_DEFAULTS.get(f.name, str(f.default))
            option = typer.Option(decl, help=help_text, show_default=shown)
            annotation = Annotated[kind | None, option]
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
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            help="Serve Prometheus metrics on this port (pgqueue[metrics]).",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="Address the metrics port listens on.")
    ] = "127.0.0.1",
    loop: Annotated[
        str,
        typer.Option(
            "--loop",
            help="Event loop: auto (uvloop with the pgqueue\\[uvloop] extra, else asyncio), asyncio, uvloop.",
        ),
    ] = "auto",
    **options: object,
) -> None:
    """Run a worker until SIGTERM/SIGINT (a second signal stops at once)."""
    loop_factory = _loop_factory(loop)
    scheduler = load_scheduler(target)
    metrics = None if metrics_port is None else _metrics_for(scheduler)
    if metrics is not None:
        options["metrics"] = metrics
    _alone_on_its_loop(options)
    try:
        w = scheduler.worker(queues=queue or None, **options)
    except PgQueueError as exc:
        raise typer.BadParameter(str(exc)) from exc

    async def go() -> None:
        server = None
        if metrics is not None and metrics_port is not None:
            try:
                server = await metrics.serve(metrics_port, metrics_host)
            except OSError as exc:
                raise typer.BadParameter(f"cannot listen on {metrics_host}:{metrics_port}: {exc}") from exc
            print(f"metrics on http://{metrics_host}:{server.port}/metrics", file=sys.stderr, flush=True)
        try:
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
        finally:
            if server is not None:
                await server.close()
        await scheduler.close()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(go())


def _alone_on_its_loop(options: dict[str, object]) -> None:
    """A worker process has no neighbours on its event loop: claims and flushes overlap.

    Taking turns (``take_turns``) protects an application's other tasks on the loop; here
    there are none, and overlapping is worth throughput (``--take-turns`` to change it).
    """
    if options.get("take_turns") is None:
        options["take_turns"] = False


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``--loop`` names; None is asyncio's own.

    uvloop wakes timers with less delay than asyncio's selector loop (whose waits are
    rounded up to whole milliseconds), which is what handlers that await I/O or sleep see.
    """
    if name not in {"auto", "asyncio", "uvloop"}:
        raise typer.BadParameter(f"--loop must be auto, asyncio or uvloop, got {name!r}")
    if name == "asyncio":
        return None
    try:
        import uvloop  # noqa: PLC0415 - an optional extra
    except ImportError as exc:
        if name == "auto":
            return None
        raise typer.BadParameter(
            f"--loop uvloop needs the pgqueue[uvloop] extra: pip install 'pgqueue[uvloop]' ({exc})"
        ) from exc
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _metrics_for(scheduler: Scheduler) -> Metrics:
    """The scheduler's Metrics, or a new one in prometheus-client's default registry."""
    try:
        from pgqueue.metrics import Metrics  # noqa: PLC0415 - prometheus-client only when asked for
    except ImportError as exc:
        raise typer.BadParameter(
            f"--metrics-port needs the pgqueue[metrics] extra: pip install 'pgqueue[metrics]' ({exc})"
        ) from exc
    return scheduler.metrics if scheduler.metrics is not None else Metrics()
