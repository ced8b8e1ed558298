"""The ``/ping`` line of ``colocate``: an HTTP endpoint served on the worker's loop, while it drains.

What an application sharing its process with a worker sees: a Starlette app with one
route (``GET /ping`` answers ``pong``) served by uvicorn on 127.0.0.1 inside this process,
on the worker's event loop, and a client in a *separate* process sending ``GET /ping``
open-loop at ``RATE`` per second: each request leaves at its instant on a fixed grid,
on a kept-alive connection that is free (a new one when none is), so a slow answer delays
no later request. A request's time runs from its grid instant to the end of its answer,
so a stalled loop counts in full (no coordinated omission).

The client sends from before the drain until after it, and stamps each request with its
grid instant in wall-clock time; only the requests sent inside the drain's window (the
probe's, from the worker's report that it started until the database shows every job
finished) count.
Starlette and uvicorn come with the ``web`` extra; without them the line is skipped.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from ._harness import pct

__all__ = ["RATE", "PingClient", "ping_available", "ping_summary", "served_ping"]

RATE = 200  # requests per second
START_TIMEOUT_S = 30.0
LINE_MAX = 16 * 1024 * 1024  # the client's samples, one JSON line
# The client: asyncio and raw sockets only (it shares the machine with the worker and the
# server). "ready" once one answer came back; on any line (or EOF) on stdin it stops,
# waits for the requests in flight and prints [[sent_at_wall_clock, ms, ok], ...].
_CLIENT = """
import asyncio, json, sys, time
host, port, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
REQUEST = f"GET /ping HTTP/1.1\\r\\nHost: {host}\\r\\n\\r\\n".encode()
free, samples = [], []

async def ping(due, sent_at):
    try:
        reader, writer = free.pop() if free else await asyncio.open_connection(host, port)
        writer.write(REQUEST)
        status = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\\r\\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        ok = status.startswith(b"HTTP/1.1 200") and await reader.readexactly(length) == b"pong"
    except (OSError, asyncio.IncompleteReadError):
        ok = False
    if ok:
        free.append((reader, writer))
    elif "writer" in locals():
        writer.close()
    samples.append((sent_at, (time.perf_counter() - due) * 1000.0, ok))

async def main():
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    await ping(time.perf_counter(), time.time())
    print("ready", flush=True)
    def on_stdin():
        loop.remove_reader(sys.stdin.fileno())
        stop.set()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    samples.clear()
    perf0, wall0, tasks, i = time.perf_counter(), time.time(), set(), 0
    while not stop.is_set():
        due = perf0 + i / rate
        task = asyncio.create_task(ping(due, wall0 + (due - perf0)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
        await asyncio.sleep(max(0.0, perf0 + i / rate - time.perf_counter()))
    await asyncio.gather(*tasks)
    print(json.dumps(samples), flush=True)

asyncio.run(main())
"""


def ping_available() -> bool:
    """Starlette and uvicorn (the web extra) are importable."""
    return all(importlib.util.find_spec(m) is not None for m in ("starlette", "uvicorn"))


@dataclass
class PingClient:
    """The client process; :meth:`finish` stops it and keeps the requests of one window."""

    process: Process
    lines: BufferedByteReceiveStream
    samples: list[tuple[float, float, bool]] = field(default_factory=list)

    async def finish(self) -> None:
        """Stop the client and read its samples."""
        assert self.process.stdin is not None  # noqa: S101 - opened with pipes
        await self.process.stdin.send(b"stop\n")
        with anyio.fail_after(START_TIMEOUT_S):
            rows = json.loads(await self.lines.receive_until(b"\n", LINE_MAX))
        self.samples = [(float(at), float(ms), bool(ok)) for at, ms, ok in rows]

    def summary(self, window: tuple[float, float]) -> dict[str, object]:
        """The requests sent inside ``window``: see :func:`ping_summary`."""
        return ping_summary(self.samples, window)


def ping_summary(samples: list[tuple[float, float, bool]], window: tuple[float, float]) -> dict[str, object]:
    """Requests sent inside ``window`` (wall clock): count, failures, and p50, p99, max in ms.

    The percentiles are of the answered requests only: a failed one (a kept-alive
    connection the server closed meanwhile) fails fast, and its short time is no answer.
    """
    start, stop = window
    inside = [(ms, ok) for at, ms, ok in samples if start <= at <= stop]
    times = [ms for ms, ok in inside if ok]
    return {
        "rate": RATE,
        "requests": len(inside),
        "failed": sum(not ok for _, ok in inside),
        "p50_ms": round(pct(times, 50), 3) if times else None,
        "p99_ms": round(pct(times, 99), 3) if times else None,
        "max_ms": round(max(times), 3) if times else None,
    }


@asynccontextmanager
async def served_ping() -> AsyncIterator[PingClient]:
    """Serve /ping on this loop and run the client; yields once the client had an answer.

    The client is stopped when the block ends (call :meth:`PingClient.finish` inside it
    to read the samples first); the server then shuts down.
    """
    import uvicorn  # noqa: PLC0415 - the web extra, only for this line
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.responses import PlainTextResponse  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    async def ping(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("pong")

    app = Starlette(routes=[Route("/ping", ping)])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    # A socket bound and listening before the server starts: its port is known at once, and
    # the client's first request waits in the backlog until the server serves. The protocol
    # is named, as getaddrinfo names it when uvicorn binds by itself: asyncio turns Nagle off
    # only on sockets that say IPPROTO_TCP, and with it on, a response written in two parts
    # waits 40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        try:
            async with await anyio.open_process(
                [sys.executable, "-c", _CLIENT, "127.0.0.1", str(port), str(RATE)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            ) as child:
                assert child.stdout is not None  # noqa: S101 - opened with pipes
                lines = BufferedByteReceiveStream(child.stdout)
                with anyio.fail_after(START_TIMEOUT_S):
                    ready = await lines.receive_until(b"\n", LINE_MAX)
                if ready != b"ready":
                    raise RuntimeError(f"the /ping client did not start: {ready!r}")
                try:
                    yield PingClient(child, lines)
                finally:
                    if child.returncode is None:
                        child.terminate()
                    await child.wait()
        finally:
            server.should_exit = True
    sock.close()
