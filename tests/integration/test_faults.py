"""Database and connection faults: down at start, unreachable, connections cut, half-open.

The proxy (tests/_proxy.py) sits between pgqueue and the test server, so a test can make
the database unreachable and bring it back without touching the server itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import asyncpg
import pytest

from pgqueue import DatabaseUnavailableError, Job, JobNotFound, JobState, Scheduler, WaitTimeoutError
from pgqueue.store import FinalizeResult, Subscription
from pgqueue.store.postgres import pool as pool_module
from pgqueue.store.postgres.listen import PgSubscription
from pgqueue.worker.fetcher import Fetcher
from tests._proxy import PgProxy
from tests._support import (
    Counter,
    StoreWrapper,
    fired,
    hot_count,
    pg_store,
    running,
    runs,
    until,
    wait,
    worker_on,
)

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


async def test_schedule_after_its_connection_was_cut_uses_a_fresh_one(
    proxy: PgProxy, proxied: Scheduler, db: asyncpg.Connection
) -> None:
    # schedule() keeps one pool connection for itself between calls: once that connection
    # is cut, the call that finds it dead reports the outage and the next call reconnects.
    proxied.register("noop", lambda job: None)
    first = await proxied.schedule("noop")
    assert proxy.cut() >= 1
    try:
        second: int | None = await proxied.schedule("noop")
    except DatabaseUnavailableError:
        second = None
    third = await proxied.schedule("noop")
    ids = {r["id"] for r in await db.fetch(f"SELECT id FROM {proxied.schema}.jobs")}
    assert ids == {first, third} | ({second} if second is not None else set())


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
        # Idle first: a claim in flight at the cut would fail, and its retry (not the
        # reconnect's catch-up) could be what runs the second job.
        await fired(worker.signals.claimed, 1)
        first = await scheduler.schedule("work")
        await until(lambda: len(done.calls) == 1)
        lost = worker.signals.listener_lost.count
        proxy.refusing = True
        proxy.cut()
        await fired(worker.signals.listener_lost, lost + 1)
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
        signals = worker.signals
        lost, listening = signals.listener_lost.count, signals.listening.count
        proxy.blackhole = True
        await fired(signals.listener_lost, lost + 1)
        proxy.cut()  # the dead sockets go; new connections work again
        proxy.blackhole = False
        await fired(signals.listening, listening + 1)
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
        assert worker._stages is not None
        assert not await worker._stages.flusher.flush_once()  # fails, keeps the batch
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
    store = StoreWrapper(await pg_store(scheduler))

    async def flaky(*args: Any, **kwargs: Any) -> FinalizeResult:
        if failing:
            raise ConnectionResetError("injected")
        return await store.inner.job_finalize_many(*args, **kwargs)

    store.override("job_finalize_many", flaky)
    # Every time the fetcher decided how many jobs to claim: whether the result buffer was
    # holding runners back then, the number it wanted, and its claims so far. A decision
    # recorded is the sign that it got as far as deciding, which a quiet while cannot give.
    decisions: list[tuple[bool, int, int]] = []
    real_want = Fetcher._want

    def recorded_want(self: Fetcher) -> int:
        blocked = self._results.blocked()
        want = real_want(self)
        decisions.append((blocked, want, self._signals.claimed.count))
        return want

    monkeypatch.setattr(Fetcher, "_want", recorded_want)

    @scheduler.job("work")
    async def work(job: Job) -> None:
        done.hit(job.id)

    await scheduler.schedule_many("work", range(40))
    worker = worker_on(
        scheduler, store, concurrency=2, prefetch=4, flush_max=2, buffer_max=4, flush_age=0.01,
        on_error=lambda e: None,
    )  # fmt: skip
    async with running(worker):
        await fired(worker.signals.flush_failed, 3)
        assert worker._stages is not None
        fetcher, results = worker._stages.fetcher, worker._stages.results
        await until(results.blocked)  # the buffer is over its high-water mark
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
        store = await pg_store(proxied)
        sub = await store.subscribe(lambda payload: None)
        try:
            sock = sub._conn._transport.get_extra_info("socket")  # type: ignore[union-attr]
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            if hasattr(socket, "TCP_KEEPIDLE"):
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10
        finally:
            await sub.aclose()


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
        store = await pg_store(bouncer)
        async with store.pool.acquire() as conn:
            assert conn._stmt_cache.get_max_size() == 0  # type: ignore[attr-defined]
    finally:
        await bouncer.close()
    assert len(await runs(db, scheduler.schema)) == 3


async def test_pgbouncer_mode_waits_by_polling_without_listen(dsn: str, scheduler: Scheduler) -> None:
    """No LISTEN through a transaction pooler: wait() polls the record instead."""
    bouncer = Scheduler(dsn, schema=scheduler.schema, pgbouncer=True)
    release = anyio.Event()

    @bouncer.job("work")
    async def work(job: Job) -> str:
        await release.wait()
        return "done"

    subscribed: list[object] = []
    store = await pg_store(bouncer)
    real_subscribe = store.subscribe

    async def spy(on_payload: Callable[[str], None]) -> PgSubscription:
        subscribed.append(on_payload)
        return await real_subscribe(on_payload)

    store.subscribe = spy  # type: ignore[method-assign]
    try:
        async with running(bouncer.worker(poll_interval=0.05)):
            job_id = await bouncer.schedule("work", None)
            with pytest.raises(WaitTimeoutError):
                await bouncer.wait(job_id, timeout=0.2)
            release.set()
            record = await bouncer.wait(job_id, timeout=30)
        assert (record.state, record.result) == (JobState.SUCCEEDED, "done")
        with pytest.raises(JobNotFound):
            await bouncer.wait(10**12, timeout=1)
        assert subscribed == []
    finally:
        await bouncer.close()


async def test_pgbouncer_pools_send_no_session_settings(dsn: str) -> None:
    """PgBouncer refuses startup parameters it does not know: pgbouncer=True sends none."""
    plain, bouncer = Scheduler(dsn), Scheduler(dsn, pgbouncer=True)
    try:
        tuned = await pg_store(plain)
        assert await tuned.pool.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        assert await tuned.pool.fetchval("SHOW jit") == "off"
        bare = await pg_store(bouncer)
        assert await bare.pool.fetchval("SHOW plan_cache_mode") == "auto"
        assert bouncer.worker(queues=["q"]).config.vacuum_min_dead == 0
    finally:
        await plain.close()
        await bouncer.close()


async def test_close_over_a_silent_network_drops_the_connections_after_its_deadline(
    proxy: PgProxy, proxied: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server stops answering without closing anything (a half-open network): a
    graceful close would wait for the kernel to give up on the sockets."""
    monkeypatch.setattr(pool_module, "POOL_CLOSE_S", 0.5)
    proxied.register("noop", lambda job: None)
    await proxied.schedule("noop")  # the pool has a connection open
    pool = (await pg_store(proxied)).pool
    proxy.blackhole = True
    with anyio.fail_after(30):
        await proxied.close()
    assert pool.is_closing()
    proxy.blackhole = False


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

    from pgqueue.store.postgres import is_unavailable

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
    store = StoreWrapper(await pg_store(scheduler))
    lost: list[str] = []

    class FirstProbeLost:
        """The real subscription, except that its probe goes to a channel nobody listens on."""

        def __init__(self, sub: PgSubscription) -> None:
            self.sub = sub

        def is_lost(self) -> bool:
            return self.sub.is_lost()

        async def wait_lost(self) -> None:
            await self.sub.wait_lost()

        async def probe(self, payload: str) -> None:
            lost.append(payload)
            await self.sub._conn.execute("SELECT pg_notify('nobody_listens_here', $1)", payload)

        async def aclose(self) -> None:
            await self.sub.aclose()

    async def subscribe(on_payload: Callable[[str], None]) -> Subscription:
        sub = await store.inner.subscribe(on_payload)
        return sub if lost else FirstProbeLost(sub)

    store.override("subscribe", subscribe)
    errors: list[BaseException] = []
    done = Counter(1)

    @scheduler.job("work")
    async def work(job: Job) -> None:
        done.hit(job.id)

    worker = worker_on(scheduler, store, poll_interval=60, listen_probe_interval=0.2, on_error=errors.append)
    async with running(worker):
        await fired(worker.signals.listening, 2)  # lost its first probe, connected again
        job_id = await scheduler.schedule("work")
        await wait(done.done)
    assert lost
    assert done.calls == [job_id]
    assert any("probe failed: TimeoutError" in str(e) for e in errors), errors


async def test_an_error_in_the_vacuum_loop_is_reported_and_the_loop_goes_on(
    scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StoreWrapper(await pg_store(scheduler))
    calls: list[int] = []

    async def failing_once(min_dead: int) -> int | None:
        calls.append(min_dead)
        if len(calls) == 1:
            raise RuntimeError("vacuum broke")
        return await store.inner.jobs_vacuum_if_needed(min_dead)

    store.override("jobs_vacuum_if_needed", failing_once)
    errors: list[BaseException] = []
    done = Counter(1)

    @scheduler.job("work")
    async def work(job: Job) -> None:
        done.hit(job.id)

    worker = worker_on(scheduler, store, heartbeat_interval=0.05, vacuum_min_dead=1, on_error=errors.append)
    async with running(worker):
        await until(lambda: len(calls) >= 3)  # it failed once and kept checking
        job_id = await scheduler.schedule("work")
        await wait(done.done)
    assert [str(e) for e in errors] == ["vacuum broke"]
    assert done.calls == [job_id]
