"""job.log: created lazily, capped, never failing; its lines carried by build_batch."""

from __future__ import annotations

import logging
import threading

import orjson
import pytest

from pgqueue import ErrorWithRetry, Job, JobLog, Outcome, RunInfo
from pgqueue._joblog import MAX_LOG_BYTES, MAX_LOG_LINES, decode_lines
from pgqueue.testing import run_job
from pgqueue.worker.flusher import build_batch
from pgqueue.worker.results import RunResult

LINES = '[{"at":"2030-01-01T00:00:00+00:00","level":"info","msg":"hi"}]'


def _job(job_id: int = 1) -> Job:
    return Job._from_row((job_id, "q", "t", None, 0, 2, 0, None, 0.0, 0.0, None, False, 2, None, None))


def _ended(job: Job, lines: str | None) -> RunResult:
    return RunResult(job, Outcome.SUCCEEDED, 1.0, 2.0, None, None, None, 0, lines)


def _back(job: Job, lines: str | None) -> RunResult:
    return RunResult(job, Outcome.FAILED, 1.0, 2.0, "boom", None, ErrorWithRetry(ValueError(), 5), 1, lines)


def test_a_job_whose_handler_never_logs_allocates_no_log() -> None:
    job = _job()
    assert job._control is None
    assert job._log_text is None


async def test_run_job_without_logging_leaves_the_job_bare() -> None:
    seen: list[Job] = []

    async def handler(job: Job) -> None:
        seen.append(job)

    outcome = await run_job(handler)
    assert outcome.log == []
    assert seen[0]._control is None


def test_the_log_is_created_once_and_tied_to_the_run() -> None:
    job = _job(7)
    log = job.log
    assert isinstance(log, JobLog)
    assert job.log is log
    log.info("hello", n=1)
    [line] = decode_lines(job._log_text)
    assert (line.level, line.msg, line.fields) == ("info", "hello", {"n": 1})


def test_threads_that_log_at_once_lose_no_line() -> None:
    job = _job()
    start = threading.Barrier(8)

    def write(t: int) -> None:
        start.wait()
        for i in range(100):
            job.log.info("x", t=t, i=i)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    lines = decode_lines(job._log_text)
    assert len(lines) == 800
    assert sorted((line.fields["t"], line.fields["i"]) for line in lines) == [
        (t, i) for t in range(8) for i in range(100)
    ]


def test_the_line_cap_keeps_a_prefix_and_counts_the_rest() -> None:
    log = _job().log
    for i in range(MAX_LOG_LINES + 3):
        log.info("l", i=i)
    assert len(log) == MAX_LOG_LINES
    stored = orjson.loads(log.encoded() or "")
    assert [s["i"] for s in stored[:-1]] == list(range(MAX_LOG_LINES))
    assert stored[-1]["level"] == "warning"
    assert stored[-1]["dropped"] == 3


def test_the_byte_cap_closes_the_log_at_the_first_line_that_does_not_fit() -> None:
    log = _job().log
    log.info("x" * (MAX_LOG_BYTES - 200))
    log.info("y" * 300)  # does not fit: the log is closed
    log.info("z")  # would fit, but comes after a dropped line
    text = log.encoded() or ""
    stored = orjson.loads(text)
    assert [s["msg"][0] for s in stored] == ["x", "2"]  # "2 more log lines dropped"
    assert stored[-1]["dropped"] == 2
    assert len(text) < MAX_LOG_BYTES + 300


def test_a_non_text_message_is_its_str() -> None:
    log = _job().log
    log.error(ValueError("bad"))
    log.info(42)
    assert [line.msg for line in decode_lines(log.encoded())] == ["bad", "42"]


def test_lines_are_mirrored_to_the_pgqueue_logger(caplog: pytest.LogCaptureFixture) -> None:
    log = _job(9).log
    with caplog.at_level(logging.DEBUG, logger="pgqueue"):
        log.warning("disk nearly full", free=3)
        log.debug("detail")
    records = [r for r in caplog.records if getattr(r, "event", None) == "job_log"]
    assert [(r.levelno, r.line, r.job_id, r.type, r.attempt) for r in records] == [  # type: ignore[attr-defined]
        (logging.WARNING, "disk nearly full", 9, "t", 2),
        (logging.DEBUG, "detail", 9, "t", 2),
    ]
    assert records[0].fields == {"free": 3}  # type: ignore[attr-defined]


def test_build_batch_sends_no_lines_when_nobody_logged() -> None:
    batch = build_batch([_ended(_job(1), None), _back(_job(2), None)], None)
    assert (batch.end_lines, batch.back_lines) == ([], [])


def test_build_batch_pads_the_lines_up_to_the_last_run_that_logged() -> None:
    items = [
        _ended(_job(1), None),
        _ended(_job(2), LINES),
        _ended(_job(3), None),
        _back(_job(4), None),
        _back(_job(5), LINES),
    ]
    batch = build_batch(items, None)
    assert batch.end_ids == [1, 2, 3]
    assert batch.end_lines == [None, LINES]
    assert batch.back_ids == [4, 5]
    assert batch.back_lines == [None, LINES]
    # The line arrays are passed after the statement's other parameters ($24, $25).
    assert all(arg is not batch.end_lines and arg is not batch.back_lines for arg in batch.arguments())


def test_a_run_left_out_of_the_log_sends_no_lines() -> None:
    def only_job_2(job: Job, run: RunInfo) -> bool:
        return job.id == 2

    items = [_ended(_job(1), LINES), _back(_job(2), LINES), _ended(_job(3), None), _back(_job(4), LINES)]
    batch = build_batch(items, only_job_2)
    assert (batch.end_lines, batch.back_lines) == ([], [LINES])
    batch.without_runs()
    assert (batch.end_lines, batch.back_lines) == ([], [])
