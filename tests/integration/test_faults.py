"""Database and connection faults: down at start, unreachable, connections cut, half-open.

The proxy (tests/_proxy.py) sits between pgqueue and the test server, so a test can make
the database unreachable and bring it back without touching the server itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import asyncpg
import pytest

from pgqueue import DatabaseUnavailableError, Job, Scheduler
from pgqueue._fetcher import Fetcher
from pgqueue._store import FinalizeResult, Store
from tests._proxy import PgProxy
from tests._support import Counter, hot_count, running, runs, until, wait

pytestmark = pytest.mark.pg


@pytest.fixture
async def proxy(dsn: str) -> AsyncIterator[PgProxy]:
    p = await PgProxy(dsn).start()
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
async def proxied(proxy: PgProxy, scheduler: Scheduler) -> AsyncIterator[Scheduler]:
    """A scheduler on the test schema whose every connection goes through the proxy."""
    s = Scheduler(proxy.dsn, schema=scheduler.schema)
    try:
        yield s
    finally:
        await s.close()


async def test_a_wrong_database_name_fails_the_start_at_once(dsn: str) -> None:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    bad = urlunsplit((parts.scheme, parts.netloc, "/no_such_database_xyz", parts.query, ""))
    s = Scheduler(bad)
    s.register("noop", lambda job: None)
    try:
        with pytest.raises(asyncpg.InvalidCatalogNameError), anyio.fail_after(30):
            await s.worker().run()
    finally:
        await s.close()


async def test_schedule_while_the_database_is_down_raises_a_clear_error(
    proxy: PgProxy, proxied: Scheduler
) -> None:
    proxied.register("noop", lambda job: None)
    proxy.refusing = True
    with pytest.raises(DatabaseUnavailableError, match="schedule: the database is unavailable") as info:
        await proxied.schedule("noop")
    assert isinstance(info.value, ConnectionError)
    with pytest.raises(DatabaseUnavailableError):
        await proxied.schedule_many("noop", [1, 2])
    with pytest.raises(DatabaseUnavailableError):
        await proxied.cancel(1)
    proxy.refusing = False
    assert isinstance(await proxied.schedule("noop"), int)


async def test_a_worker_started_while_the_database_is_down_waits_and_reports(
    proxy: PgProxy, proxied: Scheduler, db: asyncpg.Connection
) -> None:
    done = Counter(1)
    errors: list[BaseException] = []

    @proxied.job("work")
    async def work(job: Job) -> None:
        done.hit(job.id)

    proxy.refusing = True
    worker = proxied.worker(on_error=errors.append)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await until(lambda: len(errors) >= 2)  # retried, and said so each time
        assert worker.id == 0  # not started
        proxy.refusing = False
        await until(lambda: worker.id != 0)
        await proxied.schedule("work")
        await wait(done.done)
        await worker.shutdown()
    assert all(isinstance(e, OSError | asyncpg.PostgresError | asyncpg.InterfaceError) for e in errors)


async def test_listener_reconnects_and_catches_a_job_scheduled_during_the_gap(
    proxy: PgProxy, proxied: Scheduler, scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """Every connection is cut and refused; a job is scheduled (directly) meanwhile. Its
    notification is lost, the poll is 60 s away: only the reconnect's catch-up claim runs it."""
    done = Counter(2)

    @proxied.job("work")
    async def work(job: Job) -> None:
        done.hit(job.id)

    scheduler.register("work", work)
    worker = proxied.worker(poll_interval=60, on_error=lambda e: None)
    async with running(worker):
        first = await scheduler.schedule("work")
        await until(lambda: len(done.calls) == 1)
        proxy.refusing = True
        proxy.cut()
        await until(lambda: worker._listener is not None and not worker._listener.connected)
        during = await scheduler.schedule("work")  # straight to the server: notify goes nowhere
        proxy.refusing = False
        await wait(done.done)
    assert done.calls == [first, during]
    assert worker.listener_connects >= 2


async def test_a_half_open_listen_connection_is_caught_by_the_probe(
    proxy: PgProxy, proxied: Scheduler, scheduler: Scheduler
) -> None:
    """Bytes stop flowing but the socket stays open: no error, no EOF. The probe notices."""
    done = Counter(1)

    @proxied.job("work")
    async def work(job: Job) -> None:
        done.hit(job.id)

    scheduler.register("work", work)
    worker = proxied.worker(poll_interval=60, listen_probe_interval=0.2, on_error=lambda e: None)
    async with running(worker):
        listener = worker._listener
        assert listener is not None
        proxy.blackhole = True
        await until(lambda: not listener.connected)
        proxy.cut()  # the dead sockets go; new connections work again
        proxy.blackhole = False
        await until(lambda: listener.connected)
        await scheduler.schedule("work")
        await wait(done.done)
    assert worker.listener_connects >= 2


async def test_a_failed_flush_keeps_its_results_and_retries(
    proxy: PgProxy, proxied: Scheduler, db: asyncpg.Connection
) -> None:
    done = Counter(20)
    errors: list[BaseException] = []

    @proxied.job("work")
    async def work(job: Job) -> None:
        done.hit(job.id)

    ids = await proxied.schedule_many("work", range(20))
    worker = proxied.worker(flush_age=3600, flush_max=1000, on_error=errors.append)
    async with running(worker):
        await wait(done.done)  # all results are buffered, none written
        proxy.refusing = True
        proxy.cut()
        flusher = worker._flusher
        assert flusher is not None
        assert not await flusher.flush_once()  # fails, keeps the batch
        assert errors
        proxy.refusing = False
    # The shutdown flush wrote everything exactly once.
    rows = await runs(db, proxied.schema)
    assert sorted(r["job_id"] for r in rows) == sorted(ids)
    assert await hot_count(db, proxied.schema) == 0


async def _wake_and_wait_for_a_look(fetcher: Fetcher, decisions: list[tuple[bool, int, int]]) -> None:
    """Give the fetcher a reason to claim, as a notification would, and wait until it decided."""
    before = len(decisions)
    fetcher.notify_ready()
    await until(lambda: len(decisions) > before)


async def test_claiming_pauses_while_the_result_buffer_is_full(
    scheduler: Scheduler, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flushes fail (the store is told to); the buffer fills to buffer_max, runners wait,
    no more claims go out. When flushes work again everything is written once."""
    done = Counter(40)
    failing = True
    real = Store.job_finalize_many

    async def flaky(self: Store, *args: Any, **kwargs: Any) -> FinalizeResult:
        if failing:
            raise ConnectionResetError("injected")
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(Store, "job_finalize_many", flaky)
    # Every time the fetcher decided how many jobs to claim: whether the result buffer was
    # holding runners back then, the number it wanted, and its claims so far. A decision
    # recorded is the sign that it got as far as deciding, which a quiet while cannot give.
    decisions: list[tuple[bool, int, int]] = []
    real_want = Fetcher._want

    def recorded_want(self: Fetcher) -> int:
        blocked = self._results.blocked()
        want = real_want(self)
        decisions.append((blocked, want, self.claims))
        return want

    monkeypatch.setattr(Fetcher, "_want", recorded_want)

    @scheduler.job("work")
    async def work(job: Job) -> None:
        done.hit(job.id)

    await scheduler.schedule_many("work", range(40))
    worker = scheduler.worker(
        concurrency=2, prefetch=4, flush_max=2, buffer_max=4, flush_age=0.01, on_error=lambda e: None
    )
    async with running(worker):
        await until(lambda: worker._flusher is not None and worker._flusher._failures >= 3)
        fetcher = worker._fetcher
        assert fetcher is not None
        await until(fetcher._results.blocked)  # the buffer is over its high-water mark
        held = worker.stats.finished
        assert held <= 4 + 2 + 4  # the buffer, plus at most one claimed batch in hand
        # Wake the fetcher with a reason to claim and wait until it has looked, a few times:
        # while the buffer is full it must want nothing and claim nothing.
        seen = len(decisions)
        for _ in range(3):
            await _wake_and_wait_for_a_look(fetcher, decisions)
        looked = decisions[seen:]
        assert all(blocked for blocked, _, _ in looked)  # each look found the buffer full
        assert {claims for _, _, claims in looked} == {worker.claims}  # and no claim went out
        failing = False
        await wait(done.done)
    # From the first time the buffer was full to the last, the fetcher wanted nothing.
    assert {want for blocked, want, _ in decisions if blocked} == {0}
    rows = await runs(db, scheduler.schema)
    assert len(rows) == 40
    assert len({r["job_id"] for r in rows}) == 40


async def test_the_listen_socket_has_tcp_keepalives(proxy: PgProxy, proxied: Scheduler) -> None:
    """Over TCP (the proxy), the LISTEN connection asks the kernel to probe a silent peer."""
    import socket

    proxied.register("noop", lambda job: None)
    worker = proxied.worker()
    async with running(worker):
        listener = worker._listener
        assert listener is not None
        store = await proxied.open()
        conn = await store.listen_connect()
        try:
            sock = conn._transport.get_extra_info("socket")  # type: ignore[union-attr]
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            if hasattr(socket, "TCP_KEEPIDLE"):
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10
        finally:
            await store.listen_close(conn)


async def test_pgbouncer_mode_polls_and_uses_no_statement_cache(
    dsn: str, scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """pgbouncer=True: unnamed statements only (no prepared-statement cache), no LISTEN."""
    bouncer = Scheduler(dsn, schema=scheduler.schema, pgbouncer=True)
    done = Counter(3)

    @bouncer.job("work")
    async def work(job: Job) -> None:
        done.hit(job.id)

    try:
        worker = bouncer.worker(poll_interval=0.05)
        assert worker.config.listen is False
        async with running(worker):
            await bouncer.schedule_many("work", [1, 2, 3])
            await wait(done.done)
        assert worker.listener_connects == 0
        store = await bouncer.open()
        async with store.pool.acquire() as conn:
            assert conn._stmt_cache.get_max_size() == 0  # type: ignore[attr-defined]
    finally:
        await bouncer.close()
    assert len(await runs(db, scheduler.schema)) == 3


async def test_pgbouncer_pools_send_no_session_settings(dsn: str) -> None:
    """PgBouncer refuses startup parameters it does not know: pgbouncer=True sends none."""
    plain, bouncer = Scheduler(dsn), Scheduler(dsn, pgbouncer=True)
    try:
        tuned = await plain.open()
        assert await tuned.pool.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        assert await tuned.pool.fetchval("SHOW jit") == "off"
        bare = await bouncer.open()
        assert await bare.pool.fetchval("SHOW plan_cache_mode") == "auto"
        assert bouncer.worker(queues=["q"]).config.vacuum_min_dead == 0
    finally:
        await plain.close()
        await bouncer.close()


async def test_shutdown_while_waiting_for_the_database_at_start(proxy: PgProxy, proxied: Scheduler) -> None:
    proxied.register("noop", lambda job: None)
    proxy.refusing = True
    errors: list[BaseException] = []
    worker = proxied.worker(on_error=errors.append)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await until(lambda: len(errors) >= 1)
        with anyio.fail_after(5):
            await worker.shutdown()
    assert worker.id == 0


def test_error_classification() -> None:
    import ssl

    from pgqueue._store import is_unavailable

    assert is_unavailable(ConnectionRefusedError())
    assert is_unavailable(TimeoutError())
    assert is_unavailable(asyncpg.InterfaceError("connection is closed"))
    assert is_unavailable(asyncpg.exceptions.AdminShutdownError("terminating connection"))
    assert is_unavailable(asyncpg.exceptions.InternalClientError("cannot switch to state 12; another op"))
    assert not is_unavailable(asyncpg.InterfaceError("pool is closed"))
    assert not is_unavailable(asyncpg.exceptions.ProtocolViolationError("unsupported startup parameter"))
    assert not is_unavailable(ssl.SSLCertVerificationError("certificate verify failed"))
    assert not is_unavailable(asyncpg.InvalidCatalogNameError("no such database"))
    assert not is_unavailable(ValueError("a bug"))


async def test_a_probe_lost_on_a_live_connection_reconnects_the_listener(
    scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server is up and the socket healthy, but the probe's notification never comes back
    (here: the first probe goes to another channel). The probe's timeout treats the LISTEN
    connection as dead, reconnects, and jobs keep being picked up by notification."""
    real_probe = Store.listen_probe
    lost: list[str] = []

    async def first_probe_lost(self: Store, conn: asyncpg.Connection, payload: str) -> None:
        if not lost:
            lost.append(payload)
            await conn.execute("SELECT pg_notify('nobody_listens_here', $1)", payload)
            return
        await real_probe(self, conn, payload)

    monkeypatch.setattr(Store, "listen_probe", first_probe_lost)
    errors: list[BaseException] = []
    done = Counter(1)

    @scheduler.job("work")
    async def work(job: Job) -> None:
        done.hit(job.id)

    worker = scheduler.worker(poll_interval=60, listen_probe_interval=0.2, on_error=errors.append)
    async with running(worker):
        await until(lambda: worker.listener_connects >= 2)
        await until(lambda: worker._listener is not None and worker._listener.connected)
        job_id = await scheduler.schedule("work")
        await wait(done.done)
    assert lost
    assert done.calls == [job_id]
    assert any("probe failed: TimeoutError" in str(e) for e in errors), errors


async def test_an_error_in_the_vacuum_loop_is_reported_and_the_loop_goes_on(
    scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_vacuum = Store.jobs_vacuum_if_needed
    calls: list[int] = []

    async def failing_once(self: Store, min_dead: int) -> int | None:
        calls.append(min_dead)
        if len(calls) == 1:
            raise RuntimeError("vacuum broke")
        return await real_vacuum(self, min_dead)

    monkeypatch.setattr(Store, "jobs_vacuum_if_needed", failing_once)
    errors: list[BaseException] = []
    done = Counter(1)

    @scheduler.job("work")
    async def work(job: Job) -> None:
        done.hit(job.id)

    worker = scheduler.worker(heartbeat_interval=0.05, vacuum_min_dead=1, on_error=errors.append)
    async with running(worker):
        await until(lambda: len(calls) >= 3)  # it failed once and kept checking
        job_id = await scheduler.schedule("work")
        await wait(done.done)
    assert [str(e) for e in errors] == ["vacuum broke"]
    assert done.calls == [job_id]
