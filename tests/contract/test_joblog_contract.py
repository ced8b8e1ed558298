"""Per-job log lines (``job.log``) on each backend: written with the run, read through get_job."""

from __future__ import annotations

import datetime as dt

import anyio

from pgqueue import Job, JobState, LinearBackoff, LogLine, Outcome, Scheduler, Snooze
from pgqueue._joblog import MAX_LOG_BYTES, MAX_LOG_LINES
from pgqueue.testing import drain, run_job
from tests.contract._helpers import run_until_ended


async def test_lines_are_read_back_with_the_run(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    before = dt.datetime.now(dt.UTC)

    @s.job("t")
    async def t(job: Job) -> str:
        job.log.debug("starting", step=0)
        job.log.info("charged", amount=12, currency="EUR", items=[1, 2], meta={"a": None})
        job.log.warning("slow answer", seconds=1.5)
        job.log.error("gave up on a mirror")
        return "ok"

    job_id = await s.schedule("t")
    [done] = await run_until_ended(s, job_id)
    after = dt.datetime.now(dt.UTC)
    assert done.state is JobState.SUCCEEDED
    [run] = done.runs
    assert [(line.level, line.msg, line.fields) for line in run.log] == [
        ("debug", "starting", {"step": 0}),
        ("info", "charged", {"amount": 12, "currency": "EUR", "items": [1, 2], "meta": {"a": None}}),
        ("warning", "slow answer", {"seconds": 1.5}),
        ("error", "gave up on a mirror", {}),
    ]
    assert all(isinstance(line, LogLine) for line in run.log)
    assert all(line.at.utcoffset() == dt.timedelta(0) for line in run.log)
    assert before <= run.log[0].at <= run.log[-1].at <= after


async def test_a_run_that_writes_nothing_has_no_lines(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler

    @s.job("t")
    async def t(job: Job) -> None:
        return None

    job_id = await s.schedule("t")
    [done] = await run_until_ended(s, job_id)
    assert done.runs[0].log == []


async def test_each_attempt_keeps_its_own_lines(backend_scheduler: Scheduler) -> None:
    """A job that fails once then succeeds: the put-back run and the final run each have
    the lines written during them, and only those."""
    s = backend_scheduler

    @s.job("t", retry=LinearBackoff(max_retries=3, base_delay=0))
    async def t(job: Job) -> str:
        job.log.info("attempt", n=job.attempt)
        if job.attempt == 1:
            job.log.error("the mirror is down")
            raise ConnectionError("down")
        return "done"

    job_id = await s.schedule("t")
    [done] = await run_until_ended(s, job_id)
    assert [(r.attempt, r.outcome) for r in done.runs] == [(1, Outcome.FAILED), (2, Outcome.SUCCEEDED)]
    first, second = done.runs
    assert [(line.level, line.msg, line.fields) for line in first.log] == [
        ("info", "attempt", {"n": 1}),
        ("error", "the mirror is down", {}),
    ]
    assert [(line.level, line.msg, line.fields) for line in second.log] == [("info", "attempt", {"n": 2})]


async def test_a_snoozed_run_and_a_timed_out_run_keep_their_lines(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    never = anyio.Event()

    @s.job("snoozy")
    async def snoozy(job: Job) -> None:
        job.log.info("run", attempt=job.attempt)
        if job.attempt == 1:
            raise Snooze(0)

    @s.job("slow", timeout=0.05)
    async def slow(job: Job) -> None:
        job.log.info("waiting for ever")
        await never.wait()

    snoozed, timed_out = await s.schedule("snoozy"), await s.schedule("slow")
    records = await run_until_ended(s, snoozed, timed_out)
    assert [[line.fields for line in r.log] for r in records[0].runs] == [[{"attempt": 1}], [{"attempt": 2}]]
    [run] = records[1].runs
    assert run.outcome is Outcome.TIMEOUT
    assert [line.msg for line in run.log] == ["waiting for ever"]


async def test_lines_past_the_cap_are_dropped_and_counted(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    extra = 7

    @s.job("many")
    async def many(job: Job) -> None:
        for i in range(MAX_LOG_LINES + extra):
            job.log.info("line", i=i)

    @s.job("big")
    async def big(job: Job) -> None:
        for i in range(40):
            job.log.info("x" * 4000, i=i)

    many_id, big_id = await s.schedule("many"), await s.schedule("big")
    many_rec, big_rec = await run_until_ended(s, many_id, big_id)
    lines = many_rec.runs[0].log
    assert len(lines) == MAX_LOG_LINES + 1
    assert [line.fields["i"] for line in lines[:-1]] == list(range(MAX_LOG_LINES))
    marker = lines[-1]
    assert (marker.level, marker.fields) == ("warning", {"dropped": extra})
    assert f"{extra} more log lines dropped" in marker.msg

    kept = big_rec.runs[0].log[:-1]
    assert 0 < len(kept) < 40  # 40 lines of 4 KB are beyond the 128 KiB cap
    assert sum(len(line.msg) for line in kept) <= MAX_LOG_BYTES
    assert [line.fields["i"] for line in kept] == list(range(len(kept)))  # a prefix: the first lines
    assert big_rec.runs[0].log[-1].fields == {"dropped": 40 - len(kept)}


async def test_an_unencodable_field_is_stored_as_its_repr(backend_scheduler: Scheduler) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque>"

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    s = backend_scheduler

    @s.job("t")
    async def t(job: Job) -> str:
        job.log.info(
            "odd values",
            opaque=Opaque(),
            tags={"b"},
            huge=2**80,
            nested={"k": Opaque(), 1: "int key"},
            broken=Broken(),
        )
        job.log.info("nul \x00 and a lone \ud800 surrogate", text="a\x00b")
        job.log.info("own keys", msg="field", level="field", at="field")
        return "still succeeds"

    job_id = await s.schedule("t")
    [done] = await run_until_ended(s, job_id)
    assert (done.state, done.result) == (JobState.SUCCEEDED, "still succeeds")
    odd, nul, own = done.runs[0].log
    assert odd.fields == {
        "opaque": "<Opaque>",
        "tags": "{'b'}",
        "huge": str(2**80),
        "nested": {"k": "<Opaque>", "1": "int key"},
        "broken": "<unrepresentable Broken>",
    }
    assert nul.msg == "nul \\x00 and a lone \\ud800 surrogate"
    assert nul.fields == {"text": "a\\x00b"}
    assert (own.msg, own.level, own.fields) == (
        "own keys",
        "info",
        {"msg_": "field", "level_": "field", "at_": "field"},
    )


async def test_a_sync_handler_logs_from_its_thread(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler

    def sync(job: Job) -> int:
        job.log.info("in a thread", n=job.params)
        return int(job.params) * 2

    s.register("sync", sync)
    job_id = await s.schedule("sync", 21)
    [done] = await run_until_ended(s, job_id)
    assert done.result == 42
    assert [(line.msg, line.fields) for line in done.runs[0].log] == [("in a thread", {"n": 21})]


async def test_list_jobs_leaves_the_lines_out(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler

    @s.job("t")
    async def t(job: Job) -> None:
        job.log.info("only get_job reads me")

    job_id = await s.schedule("t")
    [done] = await run_until_ended(s, job_id)
    assert len(done.runs[0].log) == 1
    [listed] = (await s.list_jobs()).items
    assert listed.runs[0].log == []


async def test_drain_and_run_job_keep_the_lines(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler

    @s.job("t")
    async def t(job: Job) -> None:
        job.log.warning("drained", x=1)

    job_id = await s.schedule("t")
    [ran] = await drain(s)
    assert [(line.level, line.msg, line.fields) for line in ran.log] == [("warning", "drained", {"x": 1})]
    assert [line.msg for line in (await s.get_job(job_id)).runs[0].log] == ["drained"]
    outcome = await run_job(t)
    assert [(line.msg, line.fields) for line in outcome.log] == [("drained", {"x": 1})]
