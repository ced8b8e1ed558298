"""Failure modes the chaos runs provoke, each reduced to a deterministic reproduction."""

from __future__ import annotations

import asyncio
import contextlib

import anyio
import asyncpg
import pytest

from pgqueue import Scheduler
from tests._proxy import PgProxy
from tests._support import pg_store

pytestmark = [pytest.mark.chaos, pytest.mark.pg]


class HoldEofProxy(PgProxy):
    """Forwards bytes both ways, but when the server closes a connection the client's side
    stays open until :attr:`release` is set.

    That freezes a moment every terminated connection goes through: asyncpg has read the
    server's FATAL message but not yet the end of the stream (normally an event-loop turn or
    two later), and a pool still hands the connection out as open.
    """

    def __init__(self, target_dsn: str) -> None:
        super().__init__(target_dsn)
        self.eof_held = asyncio.Event()
        self.release = asyncio.Event()

    async def _on_eof(self, *, server_closed: bool) -> None:
        if server_closed:
            self.eof_held.set()
            await self.release.wait()


async def test_worker_start_survives_a_pooled_connection_terminated_while_idle(
    dsn: str, schema_name: str, db: asyncpg.Connection
) -> None:
    proxy = HoldEofProxy(dsn)
    await proxy.start()
    s = Scheduler(proxy.dsn, schema=schema_name, pool_max_size=1)
    s.register("noop", lambda job: None)
    try:
        await s.migrate()  # the pool's only connection is now open and idle
        pid = await (await pg_store(s)).pool.fetchval("SELECT pg_backend_pid()")
        await db.execute("SELECT pg_terminate_backend($1)", pid)
        with anyio.fail_after(30):
            await proxy.eof_held.wait()  # asyncpg has the FATAL message, not yet the EOF

        errors: list[BaseException] = []

        def on_error(exc: BaseException) -> None:
            errors.append(exc)
            proxy.release.set()  # the worker reported the fault and will retry: let the EOF through

        worker = s.worker(on_error=on_error)
        failure: BaseException | None = None
        try:
            async with anyio.create_task_group() as tg:
                with anyio.fail_after(30):
                    await tg.start(worker.run)
                await worker.shutdown()
        except Exception as exc:
            failure = exc
        assert failure is None, f"the worker failed at start-up instead of retrying: {failure!r}"
        assert errors, "the dropped connection was reported through on_error"
    finally:
        proxy.release.set()
        await s.close()
        await proxy.close()
        with contextlib.suppress(Exception):
            await db.execute(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')
