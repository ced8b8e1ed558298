"""Serving ``/metrics``: on the worker's event loop, from a thread, or as an ASGI app to mount.

Every way renders the registry with prometheus-client's encoders. What differs is where
the scrape runs, which decides how the queue-depth query reaches the worker's loop (see
``_depth.py``):

- :class:`LoopServer` (what ``pgqueue worker --metrics-port`` runs) answers on the
  worker's own loop: it awaits the depth refresh, then renders. No thread: a thread that
  renders competes with the worker for the GIL, and at 20 scrapes a second that cost the
  drain several times what rendering itself costs (the benchmark's ``metrics`` phase).
- :class:`MetricsServer` is prometheus-client's own HTTP server thread, for an
  application that wants one (its threads hand the depth query to the loop and wait).
- :func:`asgi_app` awaits the refresh and hands over to prometheus-client's ASGI app.

The loop server speaks just enough HTTP/1.1 for a scraper: GET or HEAD on any path,
keep-alive, the ``Accept`` header; no compression, no TLS (put a proxy in front, or use
prometheus-client's server, which has both). It answers in the text format whenever the
scraper accepts it (Prometheus does, after OpenMetrics), written by ``_text.render``: the
bytes of prometheus-client's ``generate_latest`` in a fifth of the time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping

from prometheus_client import make_asgi_app, start_http_server
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from pgqueue._errors import describe
from pgqueue._log import get_logger

from ._text import CONTENT_TYPE, render

__all__ = ["ASGIApp", "LoopServer", "MetricsServer", "accepts_text", "asgi_app"]

Scope = MutableMapping[str, object]
Message = MutableMapping[str, object]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI 3 application (Starlette's ``Mount``, FastAPI's ``app.mount`` take it)."""
STOP_TIMEOUT_S = 5.0
HEAD_MAX_BYTES = 16_384  # a scrape's request line and headers fit easily
IDLE_TIMEOUT_S = 300.0  # a kept-alive connection with no request for this long is closed
_REASONS = {200: "OK", 400: "Bad Request", 405: "Method Not Allowed", 500: "Internal Server Error"}
METRICS_SCRAPE_FAILED = "metrics_scrape_failed"
_log = get_logger()


class MetricsServer:
    """prometheus-client's HTTP server for one registry, in a daemon thread."""

    def __init__(self, registry: CollectorRegistry, port: int, host: str) -> None:
        self._httpd, self._thread = start_http_server(port, addr=host, registry=registry)
        self.host = host
        self.port: int = self._httpd.server_port
        """The port it listens on (the one the system picked when 0 was asked for)."""

    def close(self) -> None:
        """Stop serving and wait for the server thread (idempotent)."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(STOP_TIMEOUT_S)
        self._httpd.server_close()


class LoopServer:
    """An HTTP server on the running event loop that renders ``registry`` after ``before()``."""

    def __init__(self, registry: CollectorRegistry, before: Callable[[], Awaitable[None]]) -> None:
        self._registry = registry
        self._before = before
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()  # kept-alive connections, closed by close()
        self.port = 0
        """The port it listens on, once started (the one the system picked for 0)."""
        self.scrapes = 0
        """Requests answered."""

    async def start(self, port: int, host: str) -> None:
        """Listen on ``host:port``; binding errors (a port in use) raise ``OSError``."""
        self._server = await asyncio.start_server(self._connection, host, port, limit=HEAD_MAX_BYTES)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and close open connections."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for writer in list(self._open):
                writer.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            while await self._answer(reader, writer):
                pass
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the scraper went away, sent garbage, or idled: nothing to tell it
        finally:
            self._open.discard(writer)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; True to keep the connection for the next."""
        async with asyncio.timeout(IDLE_TIMEOUT_S):
            head = await reader.readuntil(b"\r\n\r\n")
        request, *lines = head.decode("latin-1").split("\r\n")
        parts = request.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):  # noqa: PLR2004 - method, target, version
            await _respond(writer, 400, "text/plain", b"bad request\n", keep=False)
            return False
        method, _target, version = parts
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)
        }
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if method not in ("GET", "HEAD"):
            # Closed: a body this server does not read would be taken for the next request.
            await _respond(writer, 405, "text/plain", b"GET or HEAD\n", keep=False)
            return False
        await self._before()
        try:
            accept = headers.get("accept", "")
            if accepts_text(accept):
                body, content_type = render(self._registry), CONTENT_TYPE
            else:
                encoder, content_type = choose_encoder(accept)
                body = encoder(self._registry)
        except Exception as exc:  # noqa: BLE001 - a bad Accept header or a broken collector: a 500, not a crash
            _log.warning(METRICS_SCRAPE_FAILED, error=describe(exc))
            await _respond(writer, 500, "text/plain", f"{describe(exc)}\n".encode(), keep=False)
            return False
        self.scrapes += 1
        await _respond(
            writer, 200, content_type, b"" if method == "HEAD" else body, keep=keep, length=len(body)
        )
        return keep


def accepts_text(accept: str) -> bool:
    """Whether the scraper takes the text format (0.0.4), whatever it would prefer.

    Prometheus asks for OpenMetrics first and takes the text format too; pgqueue answers
    in text, which :func:`render` writes in a fraction of the time. A scraper that takes
    only OpenMetrics gets it from prometheus-client.
    """
    if not accept.strip():
        return True
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        if media in ("text/plain", "text/*", "*/*") and not any(_is_q_zero(p) for p in params):
            return True
    return False


def _is_q_zero(param: str) -> bool:
    """``q=0``: the media range is refused."""
    key, _, value = param.partition("=")
    try:
        return key.strip() == "q" and float(value) == 0
    except ValueError:
        return False


async def _respond(
    writer: asyncio.StreamWriter, status: int, content_type: str, body: bytes, *, keep: bool, length: int = -1
) -> None:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body) if length < 0 else length}\r\n"
        f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
    )
    writer.write(head.encode("latin-1") + body)
    await writer.drain()


def asgi_app(registry: CollectorRegistry, before: Callable[[], Awaitable[None]]) -> ASGIApp:
    """An ASGI app that awaits ``before()`` and then renders ``registry``."""
    render = make_asgi_app(registry)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "http":
            await before()
        await render(scope, receive, send)

    return app
