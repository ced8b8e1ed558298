"""``pgqueue dashboard``: serve the web dashboard (pages and JSON API) until SIGINT or SIGTERM.

uvicorn runs inside the same asyncio loop as the Scheduler it serves (``uvicorn.Server``,
programmatically), so one process holds one pool. Signals are ours, not uvicorn's: the
first stops gracefully (exit 0), a second at once; uvicorn's own handlers would re-raise
the signal after its shutdown, and the command would end as "interrupted".

It refuses to listen beyond loopback with neither ``--token`` nor ``--read-only``: an open
dashboard on a public address lets anyone cancel and delete jobs. Open on loopback, it
answers only requests whose Host header is a loopback name (:func:`allowed_hosts`), so a
web page whose name its attacker re-resolves to 127.0.0.1 (DNS rebinding) gets a 400.
Starlette and uvicorn come with the ``pgqueue[web]`` extra and are imported only when the
command runs, so the rest of the CLI never needs them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import anyio
import typer

from pgqueue._config import SCHEMA
from pgqueue._scheduler import Scheduler

from ._app import AppOption, DsnOption, SchemaOption, acting_as, app, resolve_dsn
from .worker import load_scheduler

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["LOOPBACK_HOSTS", "allowed_hosts", "dashboard", "is_loopback"]

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
"""The Host names an open dashboard answers (plus ``--host`` itself)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name or address (127.0.0.0/8, ::1)."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another name: it may resolve to anything


def allowed_hosts(host: str, token: str | None) -> list[str] | None:
    """The ``allowed_hosts`` of the app the command serves on ``host``.

    Without a token on loopback: the loopback names and ``host``, as only a browser on this
    machine can reach it, by one of them. With a token: None, as a rebound page cannot
    produce the token. On another address without a token (``--read-only``): None too, as
    the names it is reached by there are the network's, not known here, and the app
    refuses every action anyway.
    """
    if token or not is_loopback(host):
        return None
    own = host.strip().strip("[]").lower()
    return [*LOOPBACK_HOSTS, *([] if own in LOOPBACK_HOSTS else [own])]


async def _serve(web: Starlette, host: str, port: int, note: str) -> None:
    """Serve ``web`` until a signal: the first stops gracefully, a second at once."""
    import uvicorn  # noqa: PLC0415 - the web extra, only for this command

    class Server(uvicorn.Server):
        """uvicorn without its signal handlers (ours stop it), saying where it listens once it does."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                bound = self.servers[0].sockets[0].getsockname()[1] if self.servers else port
                typer.echo(f"pgqueue dashboard on {_url(host, bound)} ({note}); Ctrl-C stops it", err=True)

    config = uvicorn.Config(
        web, host=host, port=port, log_level="warning", access_log=False, lifespan="off", server_header=False
    )
    server = Server(config)
    async with anyio.create_task_group() as tg:

        async def on_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    if server.should_exit:
                        server.force_exit = True  # a second signal: stop at once
                    server.should_exit = True

        tg.start_soon(on_signals)
        await server.serve()
        tg.cancel_scope.cancel()


def _url(host: str, port: int) -> str:
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}/"


@app.command()
def dashboard(  # noqa: PLR0917 - typer passes options by keyword; each is the command's own
    host: Annotated[
        str, typer.Option(help="Address to listen on (beyond loopback: --token or --read-only).")
    ] = ("127.0.0.1"),
    port: Annotated[
        int, typer.Option(help="Port to listen on (0: any free port, shown at start).", min=0)
    ] = 8080,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="PGQUEUE_DASHBOARD_TOKEN", help="Require this token (Bearer header, or the login form)."
        ),
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Show, never act: every action answers 403.")
    ] = False,
    app_target: AppOption = None,
    dsn: DsnOption = None,
    schema: SchemaOption = SCHEMA,
) -> None:
    """Serve the web dashboard and its JSON API (--app: your job types, for scheduling and params)."""
    if not is_loopback(host) and not token and not read_only:
        raise typer.BadParameter(
            f"{host!r} is not a loopback address: give --token (or PGQUEUE_DASHBOARD_TOKEN) or --read-only",
            param_hint="--host",
        )
    if token is not None and not token:
        raise typer.BadParameter("the token must not be empty", param_hint="--token")
    try:
        import uvicorn  # noqa: F401, PLC0415 - the web extra: said here, before the database is opened

        from pgqueue.web import create_app  # noqa: PLC0415 - the web extra, only for this command
    except ImportError as exc:
        typer.echo(
            f"error: pgqueue dashboard needs the web extra: pip install 'pgqueue[web]' ({exc})", err=True
        )
        raise typer.Exit(1) from None
    owner = load_scheduler(app_target) if app_target else None
    note = ("token required" if token else "open: loopback only") + (", read-only" if read_only else "")

    async def go() -> None:
        async with Scheduler(resolve_dsn(dsn), schema=schema) as scheduler:
            with acting_as(owner, scheduler) as target:
                await target.stats()  # a schema that is not migrated fails here, not at the first page
                web = create_app(
                    target, token=token, read_only=read_only, allowed_hosts=allowed_hosts(host, token)
                )
                await _serve(web, host, port, note)

    anyio.run(go)
