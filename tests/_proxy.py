"""A TCP proxy in front of the test server, to make the database unreachable on demand.

It forwards 127.0.0.1:<port> to the real server (TCP or Unix socket). Tests use it to
refuse new connections (server down), cut open ones (connections killed), or stop
forwarding bytes while keeping sockets open (a half-open connection that only a probe can
detect), then resume.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qs, urlsplit, urlunsplit


class PgProxy:
    def __init__(self, target_dsn: str) -> None:
        parts = urlsplit(target_dsn)
        query = parse_qs(parts.query)
        self._user = parts.username or "postgres"
        self._db = parts.path.lstrip("/") or "postgres"
        host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
        self._unix = host if host.startswith("/") else None
        self._host = None if self._unix else host
        self._port = parts.port or 5432
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.refusing = False
        self.blackhole = False
        self.port = 0
        self.accepted = 0

    @property
    def dsn(self) -> str:
        return urlunsplit(("postgresql", f"{self._user}@127.0.0.1:{self.port}", "/" + self._db, "", ""))

    async def start(self) -> PgProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _open_target(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._unix is not None:
            return await asyncio.open_unix_connection(f"{self._unix}/.s.PGSQL.{self._port}")
        assert self._host is not None
        return await asyncio.open_connection(self._host, self._port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.close()
            return
        self.accepted += 1
        try:
            up_reader, up_writer = await self._open_target()
        except OSError:
            writer.close()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst, pair))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while data := await src.read(65536):
                while self.blackhole:  # noqa: ASYNC110 - a flag flipped by the test, polled like a wire
                    await asyncio.sleep(0.01)
                dst.write(data)
                await dst.drain()
            await self._on_eof(server_closed=dst is pair[0])
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._close_pair(pair)

    async def _on_eof(self, *, server_closed: bool) -> None:
        """Hook: one side closed cleanly; the pair is closed when this returns."""

    def _close_pair(self, pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        self._pairs.discard(pair)
        for w in pair:
            with contextlib.suppress(Exception):
                w.close()

    def cut(self) -> int:
        """Drop every open connection (the client sees a reset); returns how many."""
        pairs = list(self._pairs)
        for pair in pairs:
            self._close_pair(pair)
        return len(pairs)

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
