"""pgqueue.testing: run_job, drain and advance on the in-memory backend, the assertions."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest
from pydantic import BaseModel

from pgqueue import (
    ConfigError,
    ErrorWithRetry,
    Job,
    JobState,
    LinearBackoff,
    Outcome,
    ParamsValidationError,
    PgQueueError,
    Scheduler,
    Skip,
    Snooze,
)
from pgqueue._registry import Registry
from pgqueue.testing import advance, assert_scheduled, drain, refute_scheduled, run_job
from tests._support import ROOT_DIR


class Order(BaseModel):
    order_id: int


async def test_run_job_returns_the_result_and_every_progress_report() -> None:
    async def handler(job: Job) -> dict[str, object]:
        await job.set_progress(0.25, "a quarter")
        await job.set_progress(50)
        return {"seen": job.params, "attempt": job.attempt, "errors": job.errors}

    out = await run_job(handler, {"a": (1, 2)}, attempt=3, errors=2)
    assert out.outcome is Outcome.SUCCEEDED
    assert out.result == {"seen": {"a": [1, 2]}, "attempt": 3, "errors": 2}  # as stored: a list
    assert out.progress == ((0.25, "a quarter"), (0.5, None))
    assert (out.error, out.again, out.checkpoint) == (None, False, None)


async def test_run_job_applies_the_types_retry_filter_and_the_verdicts() -> None:
    s = Scheduler.in_memory()

    @s.job("flaky", retry=LinearBackoff(3, 10.0))
    async def flaky(job: Job) -> None:
        raise RuntimeError("down")

    failed = await run_job("flaky", scheduler=s)
    assert (failed.outcome, failed.retry_in, failed.again) == (Outcome.FAILED, 10.0, True)
    assert failed.error is not None
    assert "RuntimeError: down" in failed.error
    last = await run_job("flaky", scheduler=s, errors=3)  # the filter's retries are spent
    assert (last.outcome, last.again) == (Outcome.FAILED, False)

    async def snoozer(job: Job) -> None:
        raise Snooze(5)

    assert (await run_job(snoozer)).retry_in == 5.0

    async def skipper(job: Job) -> None:
        raise Skip("nothing to do")

    assert ((await run_job(skipper)).outcome, (await run_job(skipper)).error) == (
        Outcome.SUCCEEDED,
        "skipped: nothing to do",
    )
    at = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)

    async def later(job: Job) -> None:
        raise ErrorWithRetry(ValueError("not yet"), at)

    assert (await run_job(later)).retry_at == at


async def test_run_job_times_out_a_run_with_the_types_timeout() -> None:
    registry = Registry()

    async def stuck(job: Job) -> None:
        await anyio.Event().wait()

    jt = registry.add("stuck", stuck, queue="default", retry=None, timeout=0.05)
    out = await run_job(jt)
    assert out.outcome is Outcome.TIMEOUT
    assert "exceeded its timeout" in (out.error or "")


async def test_run_job_hands_a_checkpoint_and_stops_at_the_next_one_when_asked() -> None:
    async def export(job: Job) -> None:
        start = job.checkpoint_data["page"]
        for page in range(start, 10):
            await job.checkpoint({"page": page})

    out = await run_job(export, checkpoint={"page": 4}, suspend_requested=True)
    assert (out.outcome, out.checkpoint, out.again) == (Outcome.SUSPENDED, {"page": 4}, False)
    done = await run_job(export, checkpoint={"page": 4})
    assert (done.outcome, done.checkpoint) == (Outcome.SUCCEEDED, {"page": 9})


async def test_run_job_validates_typed_params_as_schedule_does() -> None:
    s = Scheduler.in_memory()

    @s.job("ship", params=Order)
    async def ship(job: Job) -> int:
        order: Order = job.params
        return order.order_id

    assert (await run_job("ship", {"order_id": 4}, scheduler=s)).result == 4
    with pytest.raises(ParamsValidationError, match="order_id"):
        await run_job("ship", {"order_id": "four"}, scheduler=s)
    with pytest.raises(ConfigError, match="scheduler="):
        await run_job("ship", {"order_id": 4})


async def test_drain_runs_what_handlers_schedule_and_retries_due_now_but_not_later() -> None:
    s = Scheduler.in_memory()
    seen: list[str] = []

    @s.job("step", retry=LinearBackoff(2, 0.0))
    async def step(job: Job) -> None:
        seen.append(job.params)
        if job.params == "first":
            await s.schedule("step", "second", priority=-1)
        if job.params == "flaky" and job.attempt == 1:
            raise RuntimeError("once")

    @s.job("slow_retry", retry=LinearBackoff(2, 60.0))
    async def slow_retry(job: Job) -> None:
        if job.attempt == 1:
            raise RuntimeError("later")

    await s.schedule("step", "first")
    await s.schedule("step", "flaky")
    later = await s.schedule("slow_retry", None)
    runs = await drain(s)
    assert seen == ["first", "second", "flaky", "flaky"]  # second jumps ahead: priority -1
    assert [(r.type, r.outcome, r.again) for r in runs][-1] == ("step", Outcome.SUCCEEDED, False)
    assert (await s.get_job(later)).state is JobState.SCHEDULED
    assert await drain(s) == []
    advance(s, dt.timedelta(seconds=60))
    [again] = await drain(s)
    assert (again.job_id, again.attempt, again.outcome) == (later, 2, Outcome.SUCCEEDED)


async def test_drain_gives_up_on_jobs_that_keep_coming() -> None:
    s = Scheduler.in_memory()

    @s.job("forever")
    async def forever(job: Job) -> None:
        await s.schedule("forever", None)

    await s.schedule("forever", None)
    with pytest.raises(PgQueueError, match="after 5 runs"):
        await drain(s, max_runs=5)
    assert (await s.stats()).by_type["forever"][JobState.PENDING] == 1  # handed back, not lost


async def test_advance_needs_the_in_memory_backend_and_moves_forward_only() -> None:
    with pytest.raises(ConfigError, match="in-memory backend"):
        advance(Scheduler("postgresql://unused"), 1)
    with pytest.raises(ConfigError, match="forward"):
        advance(Scheduler.in_memory(), -1)


async def test_assertions_explain_what_was_scheduled() -> None:
    s = Scheduler.in_memory()
    s.register("mail", lambda job: None)
    await s.schedule("mail", {"to": "ann@example.com", "lang": "en"}, queue="mails")
    found = await assert_scheduled(s, type="mail", params={"to": "ann@example.com"}, queue="mails", count=1)
    assert [r.params["lang"] for r in found] == ["en"]
    await refute_scheduled(s, type="mail", params={"to": "bob@example.com"})
    with pytest.raises(AssertionError) as info:
        await assert_scheduled(s, type="mail", params={"to": "bob@example.com"})
    message = str(info.value)
    assert "expected at least 1 scheduled job(s) matching type='mail'" in message
    assert '-   "to": "bob@example.com"' in message
    assert '+   "to": "ann@example.com"' in message
    with pytest.raises(AssertionError, match="expected 2 scheduled"):
        await assert_scheduled(s, type="mail", count=2)
    with pytest.raises(AssertionError, match="expected no scheduled job matching type='mail'"):
        await refute_scheduled(s, type="mail")


def test_the_in_memory_backend_needs_no_network() -> None:
    """A process where any network socket or connection raises runs a worker, drain and management."""
    script = textwrap.dedent(
        """
        import asyncio, socket

        def refuse(*args, **kwargs):
            raise OSError("the network is disabled in this test")

        class NoNetwork(socket.socket):
            # The event loop's own wake-up pipe (an AF_UNIX socketpair) is all that may exist.
            def __init__(self, family=-1, *args, **kwargs):
                if family in (socket.AF_INET, socket.AF_INET6):
                    refuse()
                super().__init__(family, *args, **kwargs)

            connect = connect_ex = refuse

        socket.socket = NoNetwork
        socket.create_connection = refuse
        asyncio.base_events.BaseEventLoop.create_connection = refuse
        asyncio.unix_events._UnixSelectorEventLoop.create_unix_connection = refuse

        import anyio
        from pgqueue import Job, JobState, Scheduler
        from pgqueue.testing import drain

        async def main() -> None:
            s = Scheduler.in_memory()
            done = anyio.Event()

            @s.job("t")
            async def t(job: Job) -> int:
                if job.params == "worker":
                    done.set()
                return 1

            await s.migrate()
            first = await s.schedule("t", "drain")
            assert [r.result for r in await drain(s)] == [1]
            async with anyio.create_task_group() as tg:
                worker = s.worker(poll_interval=3600)
                await tg.start(worker.run)
                await s.schedule("t", "worker")
                with anyio.fail_after(10):
                    await done.wait()
                await worker.shutdown()
            assert (await s.get_job(first)).state is JobState.SUCCEEDED
            print("no network needed")

        asyncio.run(main())
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT_DIR,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")},
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "no network needed" in res.stdout


def test_the_fixture_and_helpers_work_under_anyios_pytest_plugin(tmp_path: Path) -> None:
    """Without pytest-asyncio (``-p no:asyncio``): an anyio test uses the plugin's fixture."""
    root = tmp_path
    (root / "test_anyio_app.py").write_text(
        textwrap.dedent(
            """
            import pytest
            from pgqueue import Job, Outcome, Scheduler
            from pgqueue.testing import assert_scheduled, drain

            pytestmark = pytest.mark.anyio

            @pytest.fixture
            def anyio_backend() -> str:
                return "asyncio"

            async def test_drain(pgqueue_scheduler: Scheduler) -> None:
                @pgqueue_scheduler.job("t")
                async def t(job: Job) -> int:
                    return 2

                await pgqueue_scheduler.schedule("t", {"k": 1})
                await assert_scheduled(pgqueue_scheduler, type="t", params={"k": 1})
                assert [r.outcome for r in await drain(pgqueue_scheduler)] == [Outcome.SUCCEEDED]
            """
        )
    )
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:asyncio", "-p", "no:cacheprovider", str(root)],
        capture_output=True,
        text=True,
        cwd=str(root),
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed" in res.stdout


async def test_using_sends_an_apps_scheduler_to_another_backend_for_the_block_only() -> None:
    app = Scheduler("postgresql://unused.invalid/app")  # never opened: the pool connects on first use
    app.register("t", lambda job: None)
    memory = Scheduler.in_memory()
    with app.using(memory) as same:
        assert same is app
        assert app.schema == "memory"
        job_id = await app.schedule("t", {"n": 1})
        await assert_scheduled(memory, type="t", params={"n": 1})  # the job is in memory's store
    assert app.schema == "pgqueue"
    assert app._store is None  # back to its own (unopened) backend
    assert (await memory.get_job(job_id)).params == {"n": 1}


async def test_run_job_gives_the_job_its_tenant_and_checks_it() -> None:
    async def handler(job: Job) -> object:
        return job.tenant

    assert (await run_job(handler, tenant="acme")).result == "acme"
    assert (await run_job(handler)).result is None
    with pytest.raises(ConfigError, match="tenant must be a non-empty string"):
        await run_job(handler, tenant="")
