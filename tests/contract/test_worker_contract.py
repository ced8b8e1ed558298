"""A real worker on each backend: results, failures, retries, verdicts, timeouts, progress, suspend."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import struct

import anyio
import pytest

from pgqueue import (
    Cancel,
    CancelResult,
    ErrorWithRetry,
    InvalidStateError,
    Job,
    JobState,
    LinearBackoff,
    Outcome,
    Scheduler,
    Skip,
    Snooze,
    Suspended,
)
from tests._support import Counter, fired, running, until, wait
from tests.contract._helpers import Hold, ended, logged, raising, reach, run_until_ended


@dataclasses.dataclass
class Resize:
    width: int
    height: int


async def test_a_successful_run_stores_its_result(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    started, release = Counter(1), anyio.Event()

    @s.job("t")
    async def t(job: Job) -> dict[str, int]:
        started.hit((job.attempt, job.errors, job.params))
        await release.wait()
        return {"n": 7}

    worker = s.worker(poll_interval=3600)
    async with running(worker):
        job_id = await s.schedule("t", {"x": 1})
        await wait(started.done)
        live = await s.get_job(job_id)
        assert (live.state, live.attempts, live.finished_at) == (JobState.RUNNING, 1, None)
        assert live.started_at is not None
        assert await s.queue_depth() == 0
        release.set()
        [done] = await ended(s, job_id)
    assert started.calls == [(1, 0, {"x": 1})]
    assert (done.state, done.result, done.params, done.attempts, done.errors) == (
        JobState.SUCCEEDED,
        {"n": 7},
        {"x": 1},
        1,
        0,
    )
    assert (done.type, done.queue, done.inserted_at) == ("t", "default", live.inserted_at)
    [run] = done.runs
    assert (run.attempt, run.outcome, run.result, run.error, run.retry_at) == (
        1,
        Outcome.SUCCEEDED,
        {"n": 7},
        None,
        None,
    )
    assert run.worker_id == worker.id
    assert run.started_at <= run.finished_at
    assert done.finished_at == run.finished_at
    assert done.started_at == run.started_at
    assert (done.progress, done.progress_message) == (None, None)


async def test_a_sync_handler_runs_too(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("sync", lambda job: job.params * 2)
    job_id = await s.schedule("sync", 21)
    [done] = await run_until_ended(s, job_id)
    assert (done.state, done.result) == (JobState.SUCCEEDED, 42)


async def test_a_failure_without_retry_is_final(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    calls = Counter(1)

    @s.job("t")
    async def t(job: Job) -> None:
        calls.hit(job.attempt)
        raise ValueError("boom")

    job_id = await s.schedule("t")
    [record] = await run_until_ended(s, job_id)
    assert calls.calls == [1]
    assert (record.state, record.attempts, record.errors, record.result) == (JobState.FAILED, 1, 1, None)
    assert record.last_error is not None
    assert "ValueError: boom" in record.last_error
    assert "Traceback" in record.last_error
    [run] = record.runs
    assert (run.outcome, run.retry_at, run.error) == (Outcome.FAILED, None, record.last_error)


async def test_an_unencodable_result_fails_the_run(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: {1, 2})
    job_id = await s.schedule("t")
    [record] = await run_until_ended(s, job_id)
    assert record.state is JobState.FAILED
    assert "ParamsEncodeError" in (record.last_error or "")


async def test_linear_backoff_retries_until_success(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    seen: list[tuple[int, int, str | None]] = []

    @s.job("t", retry=LinearBackoff(max_retries=3, base_delay=0))
    async def t(job: Job) -> str:
        last = job.last_error.splitlines()[-1] if job.last_error else None
        seen.append((job.attempt, job.errors, last))
        if job.attempt < 3:
            raise RuntimeError(f"try {job.attempt}")
        return "third time"

    job_id = await s.schedule("t")
    [record] = await run_until_ended(s, job_id)
    assert seen == [(1, 0, None), (2, 1, "RuntimeError: try 1"), (3, 2, "RuntimeError: try 2")]
    assert [(r.attempt, r.outcome) for r in record.runs] == [
        (1, Outcome.FAILED),
        (2, Outcome.FAILED),
        (3, Outcome.SUCCEEDED),
    ]
    assert [r.retry_at is not None for r in record.runs] == [True, True, False]
    assert all(r.retry_at is None or r.retry_at >= r.finished_at for r in record.runs)
    assert (record.state, record.result, record.attempts, record.errors) == (
        JobState.SUCCEEDED,
        "third time",
        3,
        2,
    )
    assert "RuntimeError: try 2" in (record.last_error or "")


async def test_retries_run_out_and_the_job_fails(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler

    @s.job("t", retry=LinearBackoff(max_retries=2, base_delay=0))
    async def t(job: Job) -> None:
        raise ValueError(f"try {job.attempt}")

    job_id = await s.schedule("t")
    [record] = await run_until_ended(s, job_id)
    assert [(r.attempt, r.outcome) for r in record.runs] == [(i, Outcome.FAILED) for i in (1, 2, 3)]
    assert [r.retry_at is not None for r in record.runs] == [True, True, False]
    assert (record.state, record.attempts, record.errors) == (JobState.FAILED, 3, 3)
    assert "ValueError: try 3" in (record.last_error or "")


async def test_max_attempts_caps_the_runs_whatever_the_filter_says(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler

    @s.job("t", retry=LinearBackoff(max_retries=10, base_delay=0), max_attempts=2)
    async def t(job: Job) -> None:
        raise ValueError(f"try {job.attempt}")

    job_id = await s.schedule("t")
    [record] = await run_until_ended(s, job_id)
    assert [(r.attempt, r.outcome) for r in record.runs] == [(1, Outcome.FAILED), (2, Outcome.FAILED)]
    assert record.runs[-1].retry_at is None
    assert (record.state, record.attempts, record.errors) == (JobState.FAILED, 2, 2)


async def test_retry_on_limits_retries_to_some_errors(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler

    @s.job("t", retry=LinearBackoff(max_retries=5, base_delay=0, retry_on=(ConnectionError,)))
    async def t(job: Job) -> None:
        if job.attempt == 1:
            raise ConnectionError("flaky")
        raise KeyError("final")

    job_id = await s.schedule("t")
    [record] = await run_until_ended(s, job_id)
    assert [(r.outcome, r.retry_at is not None) for r in record.runs] == [
        (Outcome.FAILED, True),
        (Outcome.FAILED, False),
    ]
    assert "KeyError" in (record.last_error or "")


async def test_error_with_retry_raised_or_returned_runs_again_without_a_filter(
    backend_scheduler: Scheduler,
) -> None:
    s = backend_scheduler

    @s.job("t")
    async def t(job: Job) -> object:
        if job.attempt == 1:
            raise ErrorWithRetry(RuntimeError("not yet"), dt.timedelta(seconds=0))
        if job.attempt == 2:
            return ErrorWithRetry(RuntimeError("still not"), dt.datetime.now(dt.UTC))
        return "ok"

    job_id = await s.schedule("t")
    [record] = await run_until_ended(s, job_id)
    assert [(r.attempt, r.outcome) for r in record.runs] == [
        (1, Outcome.FAILED),
        (2, Outcome.FAILED),
        (3, Outcome.SUCCEEDED),
    ]
    assert "RuntimeError: not yet" in (record.runs[0].error or "")
    assert "RuntimeError: still not" in (record.runs[1].error or "")
    assert [r.retry_at is not None for r in record.runs] == [True, True, False]
    assert (record.state, record.result, record.errors) == (JobState.SUCCEEDED, "ok", 2)


@pytest.mark.parametrize(
    ("reason", "note"), [("the account was closed", None), ("", "cancelled by its handler")]
)
async def test_cancel_raised_by_the_handler_ends_the_job_cancelled(
    backend_scheduler: Scheduler, reason: str, note: str | None
) -> None:
    s = backend_scheduler

    @s.job("t", retry=LinearBackoff(max_retries=5, base_delay=0))
    async def t(job: Job) -> None:
        raise Cancel(reason)

    job_id = await s.schedule("t")
    [record] = await run_until_ended(s, job_id)
    assert (record.state, record.errors, record.last_error) == (JobState.CANCELLED, 0, None)
    assert [(r.outcome, r.error, r.retry_at) for r in record.runs] == [
        (Outcome.CANCELLED, note or reason, None)
    ]


@pytest.mark.parametrize(
    ("note", "error"), [("nothing to send today", "skipped: nothing to send today"), ("", "skipped")]
)
async def test_skip_ends_the_job_succeeded_without_a_result(
    backend_scheduler: Scheduler, note: str, error: str
) -> None:
    s = backend_scheduler

    @s.job("t", retry=LinearBackoff(max_retries=5, base_delay=0))
    def t(job: Job) -> None:  # a sync handler: verdicts cross the thread too
        raise Skip(note)

    job_id = await s.schedule("t")
    [record] = await run_until_ended(s, job_id)
    assert (record.state, record.result, record.errors) == (JobState.SUCCEEDED, None, 0)
    assert [(r.outcome, r.error) for r in record.runs] == [(Outcome.SUCCEEDED, error)]


async def test_snooze_puts_the_job_back_without_counting_the_run(backend_scheduler: Scheduler) -> None:
    """max_attempts=1, yet two snoozes and a third run that succeeds."""
    s = backend_scheduler
    seen: list[tuple[int, int]] = []

    @s.job("t", max_attempts=1)
    async def t(job: Job) -> str:
        seen.append((job.attempt, job.errors))
        if job.attempt < 3:
            raise Snooze(dt.timedelta(seconds=0) if job.attempt == 1 else 0)
        return "done"

    job_id = await s.schedule("t")
    [record] = await run_until_ended(s, job_id)
    assert seen == [(1, 0), (2, 0), (3, 0)]
    assert [(r.attempt, r.outcome, r.error) for r in record.runs] == [
        (1, Outcome.SNOOZED, "snoozed for 0 s"),
        (2, Outcome.SNOOZED, "snoozed for 0 s"),
        (3, Outcome.SUCCEEDED, None),
    ]
    assert [r.retry_at is not None for r in record.runs] == [True, True, False]
    assert (record.state, record.result, record.errors, record.last_error) == (
        JobState.SUCCEEDED,
        "done",
        0,
        None,
    )


async def test_a_snooze_keeps_the_last_failure_and_progress_starts_afresh(
    backend_scheduler: Scheduler,
) -> None:
    s = backend_scheduler
    seen: list[tuple[int, str | None, str | None]] = []

    @s.job("t", retry=LinearBackoff(max_retries=5, base_delay=0))
    async def t(job: Job) -> None:
        seen.append((job.attempt, job.last_error and job.last_error.splitlines()[-1], None))
        if job.attempt == 1:
            await job.set_progress(0.5, "half way")
            raise ValueError("first")
        if job.attempt == 2:
            raise Snooze(0)

    job_id = await s.schedule("t")
    [record] = await run_until_ended(s, job_id, progress_interval=0.01)
    assert [a for a, _, _ in seen] == [1, 2, 3]
    assert [e for _, e, _ in seen] == [None, "ValueError: first", "ValueError: first"]
    assert (record.state, record.progress, record.progress_message, record.errors) == (
        JobState.SUCCEEDED,
        None,
        None,
        1,
    )


async def test_a_run_past_the_type_s_timeout_is_recorded_as_timeout(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("slow", Hold().run, timeout=0.05)
    job_id = await s.schedule("slow")
    [record] = await run_until_ended(s, job_id)
    assert (record.state, record.attempts, record.errors) == (JobState.FAILED, 1, 1)
    [run] = record.runs
    assert (run.outcome, run.retry_at) == (Outcome.TIMEOUT, None)
    assert "timeout of 0.05 s" in (run.error or "")
    assert record.last_error == run.error


async def test_a_timeout_is_retried_by_the_type_s_filter(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    never = anyio.Event()

    @s.job("slow", timeout=0.05, retry=LinearBackoff(max_retries=1, base_delay=0))
    async def slow(job: Job) -> str:
        if job.attempt == 1:
            await never.wait()
        return "fast enough"

    job_id = await s.schedule("slow")
    [record] = await run_until_ended(s, job_id)
    assert [(r.outcome, r.retry_at is not None) for r in record.runs] == [
        (Outcome.TIMEOUT, True),
        (Outcome.SUCCEEDED, False),
    ]
    assert (record.state, record.result, record.errors) == (JobState.SUCCEEDED, "fast enough", 1)


async def test_a_job_s_own_timeout_overrides_the_type_s(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", Hold().run)  # no timeout of its own
    job_id = await s.schedule("t", timeout=0.05)
    [record] = await run_until_ended(s, job_id)
    assert record.state is JobState.FAILED
    assert [r.outcome for r in record.runs] == [Outcome.TIMEOUT]


async def test_progress_is_visible_while_the_job_runs_and_cleared_after(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    step = anyio.Event()
    release = anyio.Event()

    @s.job("t")
    async def t(job: Job) -> str:
        await job.set_progress(0.25, "a quarter")
        await step.wait()
        await job.set_progress(75, "percent")  # above 1: a percent
        await release.wait()
        return "ok"

    worker = s.worker(poll_interval=3600, progress_interval=0.01)
    async with running(worker):
        job_id = await s.schedule("t")

        async def reported(value: float, message: str) -> bool:
            record = await s.get_job(job_id)
            return (record.state, record.progress, record.progress_message) == (
                JobState.RUNNING,
                value,
                message,
            )

        await until(lambda: reported(0.25, "a quarter"))
        step.set()
        await until(lambda: reported(0.75, "percent"))
        release.set()
        [done] = await ended(s, job_id)
    assert (done.state, done.progress, done.progress_message, done.result) == (
        JobState.SUCCEEDED,
        None,
        None,
        "ok",
    )


async def test_progress_reads_back_as_a_real_on_every_backend(backend_scheduler: Scheduler) -> None:
    """Progress is stored as a 4-byte float (PostgreSQL's real): 0.4 reads back as the
    float4 nearest to it, not as 0.4, on both backends alike."""
    s = backend_scheduler
    release = anyio.Event()

    @s.job("t")
    async def t(job: Job) -> None:
        await job.set_progress(0.4, "four tenths")
        await release.wait()

    async with running(s.worker(poll_interval=3600, progress_interval=0.01)):
        job_id = await s.schedule("t")

        async def reported() -> bool:
            return (await s.get_job(job_id)).progress is not None

        await until(reported)
        record = await s.get_job(job_id)
        release.set()
        await ended(s, job_id)
    [as_real] = struct.unpack("f", struct.pack("f", 0.4))
    assert as_real != 0.4
    assert (record.progress, record.progress_message) == (as_real, "four tenths")


async def test_progress_is_none_before_any_report(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    hold = Hold()
    s.register("t", hold.run)
    worker = s.worker(poll_interval=3600, progress_interval=0.01)
    async with running(worker):
        job_id = await s.schedule("t")
        await wait(hold.started.done)
        written = worker.signals.progress_written.count
        record = await s.get_job(job_id)
        assert (record.state, record.progress, record.progress_message) == (JobState.RUNNING, None, None)
        hold.release()
        await ended(s, job_id)
    assert worker.signals.progress_written.count == written  # nothing reported, nothing written


async def test_an_interrupted_run_at_shutdown_puts_the_job_back(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    hold = Hold()
    s.register("t", hold.run, max_attempts=1)
    async with running(s.worker(poll_interval=3600, shutdown_grace=0.01)):
        job_id = await s.schedule("t")
        await wait(hold.started.done)
    record = await s.get_job(job_id)
    assert (record.state, record.attempts, record.errors, record.last_error) == (JobState.PENDING, 1, 0, None)
    [run] = record.runs
    assert run.outcome is Outcome.INTERRUPTED
    assert run.retry_at is not None
    assert "interrupted" in (run.error or "")


async def test_a_running_suspendable_job_stops_at_a_checkpoint_and_resumes_from_it(
    backend_scheduler: Scheduler,
) -> None:
    s = backend_scheduler
    at_step: list[int] = []
    step_reached = Counter(3)
    go_on = anyio.Event()
    starts: list[object] = []

    @s.job("export", suspendable=True, max_attempts=1)
    async def export(job: Job) -> str:
        starts.append(job.checkpoint_data)
        first = 0 if job.checkpoint_data is None else job.checkpoint_data["step"]
        for step in range(first, 5):
            await job.checkpoint({"step": step})
            at_step.append(step)
            step_reached.hit(step)
            if step == 2:
                await go_on.wait()
        return "exported"

    # No heartbeat within the test's wait: the notification alone must carry the request.
    worker = s.worker(poll_interval=3600, heartbeat_interval=600, dead_after=1800)
    async with running(worker):
        job_id = await s.schedule("export", None)
        await wait(step_reached.done)
        await s.suspend(job_id)
        live = await s.get_job(job_id)
        assert (live.state, live.suspend_requested) == (JobState.RUNNING, True)
        with pytest.raises(InvalidStateError, match=f"job {job_id} is running"):
            await s.resume(job_id)
        await fired(worker.signals.suspend_noted, 1)
        go_on.set()
        suspended = await reach(s, job_id, JobState.SUSPENDED)
        assert suspended.checkpoint == {"step": 3}
        assert suspended.suspend_requested is False
        assert [(r.outcome, r.error) for r in suspended.runs] == [
            (Outcome.SUSPENDED, "suspended at a checkpoint")
        ]
        assert (suspended.errors, suspended.last_error, suspended.finished_at) == (0, None, None)
        assert at_step == [0, 1, 2]
        assert (await s.stats()).by_type["export"][JobState.SUSPENDED] == 1

        await s.resume(job_id)
        [done] = await ended(s, job_id)
    assert (done.state, done.result) == (JobState.SUCCEEDED, "exported")
    # max_attempts=1, yet the resumed run ran: a suspended run does not count.
    assert [r.outcome for r in done.runs] == [Outcome.SUSPENDED, Outcome.SUCCEEDED]
    assert starts == [None, {"step": 3}]
    assert at_step == [0, 1, 2, 3, 4]
    assert done.checkpoint is None


async def test_a_run_that_finishes_after_a_suspend_request_ends_the_job_as_usual(
    backend_scheduler: Scheduler,
) -> None:
    s = backend_scheduler
    hold = Hold(result="finished anyway")
    s.register("t", hold.run, suspendable=True)  # a run that never reaches a checkpoint
    async with running(s.worker(poll_interval=3600)):
        job_id = await s.schedule("t")
        await wait(hold.started.done)
        await s.suspend(job_id)
        await s.suspend(job_id)  # asked twice: still running, no error
        assert (await s.get_job(job_id)).suspend_requested is True
        hold.release()
        [record] = await ended(s, job_id)
    assert (record.state, record.result, record.suspend_requested) == (
        JobState.SUCCEEDED,
        "finished anyway",
        False,
    )


async def test_a_handler_that_reads_the_request_and_raises_suspended(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    started = Counter(1)

    @s.job("long", suspendable=True)
    async def long(job: Job) -> None:
        started.hit(job.id)
        await until(lambda: job.suspend_requested)  # the handler's own check, between units of work
        raise Suspended

    worker = s.worker(poll_interval=3600)
    async with running(worker):
        job_id = await s.schedule("long", None)
        await wait(started.done)
        await s.suspend(job_id)
        record = await reach(s, job_id, JobState.SUSPENDED)
    assert [(r.outcome, r.error) for r in record.runs] == [(Outcome.SUSPENDED, "suspended")]
    assert record.checkpoint is None


async def test_a_run_that_fails_after_a_suspend_request_leaves_the_job_suspended(
    backend_scheduler: Scheduler,
) -> None:
    s = backend_scheduler
    started = Counter(1)

    @s.job("t", suspendable=True, retry=LinearBackoff(5, 0.0))
    async def t(job: Job) -> None:
        started.hit(job.id)
        await until(lambda: job.suspend_requested)
        raise RuntimeError("failed while asked to suspend")

    async with running(s.worker(poll_interval=3600)):
        job_id = await s.schedule("t", None)
        await wait(started.done)
        await s.suspend(job_id)
        record = await reach(s, job_id, JobState.SUSPENDED)
    assert [r.outcome for r in record.runs] == [Outcome.FAILED]
    assert record.errors == 1


async def test_a_checkpoint_carries_over_to_the_retry(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    seen: list[object] = []

    @s.job("t", retry=LinearBackoff(3, 0.0))
    async def t(job: Job) -> None:
        seen.append(job.checkpoint_data)
        if job.attempt == 1:
            await job.checkpoint({"done": ["a", "b"]})
            raise RuntimeError("transient")
        if job.attempt == 2:
            raise Snooze(0)  # no checkpoint of its own: the one before carries on

    async with running(s.worker(poll_interval=3600)):
        job_id = await s.schedule("t", None)
        [record] = await ended(s, job_id)
    assert record.state is JobState.SUCCEEDED
    assert seen == [None, {"done": ["a", "b"]}, {"done": ["a", "b"]}]


async def test_a_running_job_of_a_plain_type_cannot_be_suspended(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    hold = Hold()
    s.register("plain", hold.run)

    @s.job("other", suspendable=True)  # a suspendable type exists: it must not matter
    async def other(job: Job) -> None:
        return None

    async with running(s.worker(poll_interval=3600)):
        job_id = await s.schedule("plain", None)
        await wait(hold.started.done)
        with pytest.raises(InvalidStateError, match=rf"cannot suspend job {job_id}: job {job_id} is running"):
            await s.suspend(job_id)
        record = await s.get_job(job_id)
        assert (record.state, record.suspend_requested) == (JobState.RUNNING, False)
        hold.release()
        [done] = await ended(s, job_id)
    assert done.state is JobState.SUCCEEDED


async def test_a_job_put_back_for_a_later_retry_is_scheduled_with_its_history(
    backend_scheduler: Scheduler,
) -> None:
    s = backend_scheduler
    s.register("t", raising(RuntimeError, "later"), retry=LinearBackoff(max_retries=3, base_delay=3600))
    job_id = await s.schedule("t")
    async with running(s.worker(poll_interval=3600)):
        record = await logged(s, job_id, 1)
    assert (record.state, record.attempts, record.errors, record.finished_at) == (
        JobState.SCHEDULED,
        1,
        1,
        None,
    )
    [run] = record.runs
    assert (run.outcome, run.attempt) == (Outcome.FAILED, 1)
    assert run.retry_at == record.run_at
    assert record.run_at - run.finished_at >= dt.timedelta(
        seconds=3600
    )  # base x (0 + 1), on the store's clock
    assert record.started_at == run.started_at
    assert "RuntimeError: later" in (record.last_error or "")
    assert await s.queue_depth() == 0
    # cancel() reaches it before its next run: the cancelled row is run 2, and the failure
    # before it stays the job's last error.
    assert await s.cancel(job_id) is CancelResult.CANCELLED
    done = await s.get_job(job_id)
    assert [(r.attempt, r.outcome) for r in done.runs] == [(1, Outcome.FAILED), (2, Outcome.CANCELLED)]
    assert (done.state, done.attempts, done.errors, done.last_error) == (
        JobState.CANCELLED,
        2,
        1,
        record.last_error,
    )


async def test_a_long_snooze_or_a_retry_at_a_time_schedules_the_job(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    at = dt.datetime.now(dt.UTC).replace(microsecond=123456) + dt.timedelta(days=1)

    @s.job("t")
    async def t(job: Job) -> None:
        if job.params == "snooze":
            raise Snooze(dt.timedelta(hours=1))
        raise ErrorWithRetry(RuntimeError("tomorrow"), at)

    async with running(s.worker(poll_interval=3600)):
        snoozed = await s.schedule("t", "snooze")
        retried = await s.schedule("t", "at")
        rs = await logged(s, snoozed, 1)
        rr = await logged(s, retried, 1)
    assert (rs.state, rs.errors, rs.last_error, [r.outcome for r in rs.runs]) == (
        JobState.SCHEDULED,
        0,
        None,
        [Outcome.SNOOZED],
    )
    assert rs.run_at == rs.runs[0].retry_at
    assert rs.run_at - rs.runs[0].finished_at >= dt.timedelta(hours=1)
    assert (rr.state, rr.errors, rr.run_at, rr.runs[0].retry_at) == (JobState.SCHEDULED, 1, at, at)


async def test_the_handler_s_job_matches_the_stored_record(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    seen: list[Job] = []

    @s.job("t", queue="q")
    async def t(job: Job) -> None:
        seen.append(job)

    job_id = await s.schedule("t", {"a": [1, "b"]}, priority=4, run_at=dt.datetime.now(dt.UTC))
    [record] = await run_until_ended(s, job_id)
    [job] = seen
    assert (job.id, job.type, job.queue, job.params, job.priority) == (job_id, "t", "q", {"a": [1, "b"]}, 4)
    assert (job.attempt, job.errors, job.last_error, job.checkpoint_data, job.suspend_requested) == (
        1,
        0,
        None,
        None,
        False,
    )
    assert job.params_json is not None
    assert json.loads(job.params_json) == {"a": [1, "b"]}
    assert (job.run_at, job.inserted_at) == (record.run_at, record.inserted_at)  # to the microsecond
    assert job.run_at.utcoffset() == dt.timedelta(0)


async def test_an_interrupted_run_counts_against_max_attempts(backend_scheduler: Scheduler) -> None:
    """max_attempts=1: the first run is interrupted by a shutdown and put back; the next
    worker does not run it a second time but ends it failed, naming the cap."""
    s = backend_scheduler
    started, never = Counter(1), anyio.Event()

    @s.job("t", max_attempts=1)
    async def t(job: Job) -> None:
        started.hit(job.attempt)
        await never.wait()

    async with running(s.worker(poll_interval=3600, shutdown_grace=0.01)):
        job_id = await s.schedule("t")
        await wait(started.done)
    assert (await s.get_job(job_id)).state is JobState.PENDING
    [record] = await run_until_ended(s, job_id)
    assert started.calls == [1]
    assert [(r.attempt, r.outcome) for r in record.runs] == [(1, Outcome.INTERRUPTED), (2, Outcome.FAILED)]
    assert "max_attempts=1" in (record.runs[-1].error or "")
    assert record.state is JobState.FAILED


async def test_stored_params_the_model_refuses_fail_the_run(backend_scheduler: Scheduler) -> None:
    """Params written before the type had a model: the run fails, with the reason."""
    s = backend_scheduler
    s.register("resize", lambda job: None)
    job_id = await s.schedule("resize", {"width": 1})  # untyped at this point
    typed = Scheduler(backend=await s.open())  # the new code, on the same store
    typed.register("resize", lambda job: None, params=Resize)
    [record] = await run_until_ended(typed, job_id)
    [run] = record.runs
    assert run.outcome is Outcome.FAILED
    assert "ParamsValidationError" in (run.error or "")
    assert "height" in (run.error or "")


async def test_a_job_whose_type_the_worker_does_not_know_fails_once(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("mystery", lambda job: None, retry=LinearBackoff(max_retries=5, base_delay=0))
    job_id = await s.schedule("mystery")
    other = Scheduler(backend=await s.open())  # another application on the same store
    other.register("known", lambda job: None)
    [record] = await run_until_ended(other, job_id, queues=["default"])
    [run] = record.runs
    assert (record.state, run.outcome, run.retry_at) == (JobState.FAILED, Outcome.FAILED, None)
    assert "'mystery' is not registered in this worker" in (run.error or "")


async def test_a_resumed_job_and_a_released_dependent_run_once_each(backend_scheduler: Scheduler) -> None:
    """A job that became claimable twice over (suspended then resumed; waiting then released)
    is claimed once, by a worker that claims many at a time."""
    s = backend_scheduler
    runs: list[int] = []

    @s.job("t")
    async def t(job: Job) -> None:
        runs.append(job.id)

    resumed = await s.schedule("t", None)
    await s.suspend(resumed)
    await s.resume(resumed)
    first = await s.schedule("t", None)
    dependent = await s.schedule("t", None, depends_on=[first])
    records = await run_until_ended(s, resumed, first, dependent, concurrency=8)
    assert sorted(runs) == sorted([resumed, first, dependent])
    assert [len(r.runs) for r in records] == [1, 1, 1]
