"""Prometheus metrics against a real server: outcomes, histograms, gauges, queue depth, serving."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import MutableMapping
from pathlib import Path

import anyio
import asyncpg
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from pgqueue import Cancel, ErrorWithRetry, Job, Scheduler, Skip, Snooze
from pgqueue.metrics import Metrics
from tests._support import (
    ROOT_DIR,
    StoreWrapper,
    fired,
    hot_empty,
    pg_store,
    running,
    until,
    wait,
    worker_on,
)

pytestmark = pytest.mark.pg

FINISHED = "pgqueue_jobs_finished_total"


def finished_samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """Every (type, outcome) -> runs of the finished counter (queue "default")."""
    out: dict[tuple[str, str], float] = {}
    for family in registry.collect():
        for s in family.samples:
            if s.name == FINISHED:
                assert s.labels["queue"] == "default"
                out[s.labels["type"], s.labels["outcome"]] = s.value
    return out


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def test_every_outcome_is_counted_exactly_and_every_run_is_in_the_histograms(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    registry = CollectorRegistry()
    scheduler.metrics = Metrics(registry)  # its workers record into it too

    @scheduler.job("ok")
    async def ok(job: Job) -> None:
        return None

    @scheduler.job("flaky")
    async def flaky(job: Job) -> None:
        if job.attempt == 1:
            raise ErrorWithRetry(RuntimeError("not yet"), 0)

    @scheduler.job("boom")
    async def boom(job: Job) -> None:
        raise ValueError("boom")

    @scheduler.job("cancel")
    async def cancel(job: Job) -> None:
        raise Cancel("not wanted")

    @scheduler.job("slow", timeout=0.05)
    async def slow(job: Job) -> None:
        await anyio.sleep_forever()

    @scheduler.job("skip")
    async def skip(job: Job) -> None:
        raise Skip("nothing to do")

    @scheduler.job("snooze")
    async def snooze(job: Job) -> None:
        if job.attempt == 1:
            raise Snooze(0)

    await scheduler.schedule_many("ok", [1, 2, 3], chunk_size=2)
    await scheduler.schedule("ok", unique_key="once")
    await scheduler.schedule("ok", unique_key="once")  # found, not inserted: not counted
    await scheduler.schedule_many("flaky", [1, 2])
    for name in ("boom", "cancel", "slow", "skip", "snooze"):
        await scheduler.schedule(name)
    async with running(scheduler.worker()):
        await until(lambda: hot_empty(db, scheduler.schema))
    # The worker has stopped: its last flush is written and counted, and its counts stay.

    scheduled = {t: value(registry, "pgqueue_jobs_scheduled_total", type=t, queue="default") for t in
                 ("ok", "flaky", "boom", "cancel", "slow", "skip", "snooze")}  # fmt: skip
    assert scheduled == {"ok": 4, "flaky": 2, "boom": 1, "cancel": 1, "slow": 1, "skip": 1, "snooze": 1}
    assert finished_samples(registry) == {
        ("ok", "succeeded"): 4,
        ("flaky", "retried"): 2,
        ("flaky", "succeeded"): 2,
        ("boom", "failed"): 1,
        ("cancel", "cancelled"): 1,
        ("slow", "timeout"): 1,
        ("skip", "skipped"): 1,
        ("snooze", "snoozed"): 1,
        ("snooze", "succeeded"): 1,
    }
    rows = await db.fetch(f'SELECT type, count(*)::float8 FROM "{scheduler.schema}".job_runs GROUP BY type')
    logged: dict[str, float] = {r[0]: r[1] for r in rows}
    assert sum(logged.values()) == 14
    for type_, runs in logged.items():
        for histogram in ("pgqueue_job_run_duration_seconds", "pgqueue_job_queue_wait_seconds"):
            labels = {"type": type_, "queue": "default"}
            assert value(registry, f"{histogram}_count", **labels) == runs, (histogram, type_)
            assert value(registry, f"{histogram}_bucket", le="+Inf", **labels) == runs
    assert value(registry, "pgqueue_flush_batch_size_sum") == 14  # every run was written by a flush
    assert value(registry, "pgqueue_claim_batch_size_sum") == 14  # and came from a claim
    assert (value(registry, "pgqueue_claim_batch_size_count") or 0) >= 1
    assert value(registry, "pgqueue_flush_duration_seconds_count") == value(
        registry, "pgqueue_flush_batch_size_count"
    )
    timed_out = value(registry, "pgqueue_job_run_duration_seconds_sum", type="slow", queue="default")
    assert timed_out is not None
    assert timed_out >= 0.05  # it ran until its timeout
    assert value(registry, "pgqueue_jobs_running") == value(registry, "pgqueue_jobs_held") == 0


async def test_the_running_and_held_gauges_and_an_interrupted_run(scheduler: Scheduler) -> None:
    registry = CollectorRegistry()
    started = anyio.Event()

    @scheduler.job("hang")
    async def hang(job: Job) -> None:
        started.set()
        await anyio.sleep_forever()

    worker = scheduler.worker(metrics=Metrics(registry), shutdown_grace=0.01)
    await scheduler.schedule("hang")
    async with running(worker):
        await wait(started)
        assert value(registry, "pgqueue_jobs_running") == 1
        assert value(registry, "pgqueue_jobs_held") == 1
        assert value(registry, "pgqueue_result_buffer_size") == 0
    assert finished_samples(registry) == {("hang", "interrupted"): 1}
    assert value(registry, "pgqueue_jobs_running") == 0


async def _backlog(scheduler: Scheduler, pending: int) -> None:
    """``pending`` jobs due now in queue "backlog", and one due in an hour (scheduled, not pending)."""
    scheduler.register("waiting", lambda job: None, queue="backlog")
    scheduler.register("idle", lambda job: None, queue="elsewhere")
    await scheduler.schedule_many("waiting", [None] * pending)
    await scheduler.schedule("waiting", run_at=dt.timedelta(hours=1))


async def test_queue_depth_is_the_pending_count_from_one_cached_query(scheduler: Scheduler) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, depth_ttl=3600)
    await _backlog(scheduler, 7)
    async with running(scheduler.worker(["elsewhere"], metrics=metrics)):
        # From another thread, as prometheus-client's HTTP server scrapes: it waits for
        # the query on the worker's loop.
        depth = await anyio.to_thread.run_sync(
            registry.get_sample_value, "pgqueue_queue_depth", {"queue": "backlog"}
        )
        assert depth == 7 == await scheduler.queue_depth("backlog")
        assert value(registry, "pgqueue_queue_depth", queue="elsewhere") == 0  # the worker's own queue
        for _ in range(20):
            await anyio.to_thread.run_sync(generate_latest, registry)
        assert metrics.depth.queries == 1


async def test_a_scrape_on_the_workers_loop_never_waits_for_the_depth_query(scheduler: Scheduler) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, depth_ttl=3600)
    await _backlog(scheduler, 5)
    async with running(scheduler.worker(["elsewhere"], metrics=metrics)):
        # A synchronous scrape on the loop cannot wait: no value yet, a refresh is started...
        assert value(registry, "pgqueue_queue_depth", queue="backlog") is None
        assert value(registry, "pgqueue_jobs_running") == 0  # ...and the rest of the scrape answers
        # ...and a later scrape reads its result.
        await until(lambda: value(registry, "pgqueue_queue_depth", queue="backlog") == 5)
        assert metrics.depth.queries == 1


async def test_the_asgi_app_refreshes_the_depth_before_it_renders(scheduler: Scheduler) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    await _backlog(scheduler, 3)
    sent: list[MutableMapping[str, object]] = []

    async def receive() -> MutableMapping[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, object]) -> None:
        sent.append(message)

    scope: dict[str, object] = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [],
        "query_string": b"",
    }
    async with running(scheduler.worker(["elsewhere"], metrics=metrics)):
        await metrics.asgi_app()(scope, receive, send)
    assert sent[0]["status"] == 200
    body = sent[1]["body"]
    assert isinstance(body, bytes)
    assert b'pgqueue_queue_depth{queue="backlog"} 3.0' in body


async def test_a_failing_depth_query_leaves_the_gauge_out_and_the_scrape_answers(
    scheduler: Scheduler,
) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, depth_ttl=3600)
    scheduler.register("idle", lambda job: None)
    wrapper = StoreWrapper(await pg_store(scheduler))

    async def job_stats() -> list[tuple[str, str, object, int]]:
        raise ConnectionError("the database is down")

    wrapper.override("job_stats", job_stats)
    async with running(worker_on(scheduler, wrapper, metrics=metrics)):
        text = (await anyio.to_thread.run_sync(generate_latest, registry)).decode()
        assert "pgqueue_jobs_running 0.0" in text
        assert "pgqueue_queue_depth{" not in text
        await anyio.to_thread.run_sync(generate_latest, registry)
        assert metrics.depth.queries == 1  # a failure is not retried before depth_ttl


async def test_listener_reconnects_are_counted(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    registry = CollectorRegistry()
    scheduler.register("idle", lambda job: None)
    # No probe for a minute: the listener's backend shows LISTEN as its last statement.
    worker = scheduler.worker(metrics=Metrics(registry), listen_probe_interval=60)
    async with running(worker):
        listening = worker.signals.listening.count
        assert value(registry, "pgqueue_listener_reconnects_total") == 0
        pid = await db.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgqueue-listener' AND query LIKE $1",
            f"%{scheduler.schema}_events%",
        )
        assert pid is not None
        await db.execute("SELECT pg_terminate_backend($1)", pid)
        await fired(worker.signals.listening, listening + 1)
        assert value(registry, "pgqueue_listener_reconnects_total") == 1


async def test_runs_of_a_dead_worker_reaped_by_this_one_are_counted(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    registry = CollectorRegistry()
    scheduler.register("work", lambda job: None)
    await scheduler.schedule_many("work", [1, 2])
    store = await pg_store(scheduler)
    dead, _ = await store.worker_register(["default"])
    await store.job_claim_many(["default"], 2, dead)
    await db.execute(
        f"UPDATE \"{scheduler.schema}\".workers SET heartbeat = now() - interval '1 hour' WHERE id = $1", dead
    )
    worker = scheduler.worker(metrics=Metrics(registry), heartbeat_interval=0.05, dead_after=0.3)
    async with running(worker):
        await fired(worker.signals.reaped, 1)
        assert value(registry, "pgqueue_jobs_reaped_total") == 2
        await until(lambda: hot_empty(db, scheduler.schema))  # and then ran them
    assert finished_samples(registry) == {("work", "succeeded"): 2}


async def test_the_worker_command_serves_metrics(scheduler: Scheduler, dsn: str, tmp_path: Path) -> None:
    log_path = tmp_path / "worker.log"
    log = log_path.open("w")
    proc = subprocess.Popen(  # noqa: ASYNC220 - starting the worker process under test
        [sys.executable, "-m", "pgqueue", "worker", "tests.cli_app:scheduler", "--metrics-port", "0"],
        env={**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": scheduler.schema},
        cwd=ROOT_DIR, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        await until(lambda: "metrics on http://" in log_path.read_text())
        found = re.search(r"metrics on (http://\S+/metrics)", log_path.read_text())
        assert found is not None
        url = found.group(1)

        def scrape() -> str:
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200
                return str(response.read().decode())

        scheduler.register("echo", lambda job: None)
        await scheduler.schedule_many("echo", [1, 2, 3])
        done = 'pgqueue_jobs_finished_total{outcome="succeeded",queue="default",type="echo"} 3.0'

        async def drained() -> bool:
            text = await anyio.to_thread.run_sync(scrape)
            # The depth reading is up to a second old: it reaches 0 after the jobs ran.
            return done in text and 'pgqueue_queue_depth{queue="default"} 0.0' in text

        await until(drained)
        assert "process_cpu_seconds_total" in await anyio.to_thread.run_sync(scrape)  # the default registry
        proc.send_signal(signal.SIGINT)
        assert await anyio.to_thread.run_sync(lambda: proc.wait(timeout=30)) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


_WITHOUT_METRICS = textwrap.dedent(
    """
    import asyncio, os, sys
    from pgqueue import Scheduler

    async def main():
        s = Scheduler(os.environ["PGQUEUE_DSN"], schema=os.environ["PGQUEUE_SCHEMA"])
        done = asyncio.Event()

        async def noop(job):
            done.set()

        s.register("noop", noop)
        async with s:
            await s.schedule_many("noop", [1, 2, 3])
            worker = s.worker()
            task = asyncio.create_task(worker.run())
            await asyncio.wait_for(done.wait(), 30)
            await worker.shutdown()
            await task

    asyncio.run(main())
    import pgqueue.cli.worker
    print("prometheus_client" in sys.modules)
    """
)


async def test_pgqueue_and_a_worker_without_metrics_never_import_prometheus_client(
    scheduler: Scheduler, dsn: str
) -> None:
    result = await anyio.run_process(
        [sys.executable, "-c", _WITHOUT_METRICS],
        env={**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": scheduler.schema},
        cwd=ROOT_DIR,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().split() == ["False"]


async def test_the_loop_server_answers_keep_alive_scrapes_and_refuses_the_rest(
    scheduler: Scheduler,
) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    scheduler.register("idle", lambda job: None)
    async with running(scheduler.worker(metrics=metrics)):
        server = await metrics.serve(0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            for _ in range(2):  # one connection, two scrapes
                writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
                body = await reader.readexactly(length)
                assert head.startswith(b"HTTP/1.1 200 OK")
                assert b'pgqueue_queue_depth{queue="default"} 0.0' in body
            # A body the server does not read: it answers 405 and closes, so the body is never
            # taken for the next request (read() would wait for ever on a kept connection).
            writer.write(b"POST /metrics HTTP/1.1\r\nContent-Length: 18\r\n\r\nGET /metrics HTTP/")
            with anyio.fail_after(10):
                answer = await reader.read()
            assert answer.startswith(b"HTTP/1.1 405")
            assert answer.count(b"HTTP/1.1") == 1
            writer.close()
            # An Accept header prometheus-client cannot parse is the scrape's error, not the server's.
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTTP/1.1\r\nAccept: application/openmetrics-text;version=abc\r\n\r\n")
            assert (await reader.read()).startswith(b"HTTP/1.1 500")
            writer.close()
            assert server.scrapes == 2
        finally:
            await server.close()


async def test_prometheus_clients_server_thread_gets_the_depth_from_the_workers_loop(
    scheduler: Scheduler,
) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    await _backlog(scheduler, 4)
    async with running(scheduler.worker(["elsewhere"], metrics=metrics)):
        server = metrics.start_http_server(0)
        try:
            url = f"http://127.0.0.1:{server.port}/metrics"

            def scrape() -> bytes:
                with urllib.request.urlopen(url, timeout=10) as response:
                    return bytes(response.read())

            body = await anyio.to_thread.run_sync(scrape)
        finally:
            server.close()
    assert b'pgqueue_queue_depth{queue="backlog"} 4.0' in body


async def test_the_depth_gauge_stays_while_another_worker_sharing_the_metrics_runs(
    scheduler: Scheduler,
) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, depth_ttl=3600)
    await _backlog(scheduler, 4)
    async with running(scheduler.worker(["elsewhere"], metrics=metrics)):
        async with running(scheduler.worker(["elsewhere"], metrics=metrics)):
            await until(lambda: value(registry, "pgqueue_queue_depth", queue="backlog") == 4)
        # The worker whose store answered stopped; the other one's takes over.
        await until(lambda: value(registry, "pgqueue_queue_depth", queue="backlog") == 4)
    assert value(registry, "pgqueue_queue_depth", queue="backlog") is None  # no worker: no source


async def test_a_run_the_flush_could_not_write_is_not_counted(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """The flush is fenced: a job another worker holds now keeps its state, and its run here
    was not written, so it is not this worker's finished run."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    started, gate = anyio.Event(), anyio.Event()

    async def held(job: Job) -> None:
        started.set()
        await gate.wait()

    scheduler.register("held", held)
    scheduler.register("quick", lambda job: None)
    taken = await scheduler.schedule("held", None)
    schema = scheduler.schema
    async with running(scheduler.worker(["default"], metrics=metrics, poll_interval=3600)) as worker:
        await wait(started)
        other = await db.fetchval(
            f'INSERT INTO "{schema}".workers (pid, hostname, queues) VALUES (1, $1, $2) RETURNING id',
            "elsewhere",
            ["default"],
        )
        await db.execute(f'UPDATE "{schema}".jobs SET worker_id = $1 WHERE id = $2', other, taken)
        done = worker.signals.flushed.count
        gate.set()
        await fired(worker.signals.flushed, done + 1)  # the flush of that run (it wrote nothing)
        assert finished_samples(registry) == {}
        await scheduler.schedule("quick", None)  # and a run it did write is counted
        await until(lambda: finished_samples(registry) == {("quick", "succeeded"): 1})
    assert await db.fetchval(f'SELECT worker_id FROM "{schema}".jobs WHERE id = $1', taken) == other
